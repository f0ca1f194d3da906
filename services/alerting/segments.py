"""A cap on the SMS segments of an alert's text, per language (issue 16).

Every segment is one submit_sm at the operator's agreed rate and one communication unit billed per
citizen: 4,000 characters of description are about 60 UCS-2 segments per person. The text counted
is the one the SMS channel carries (`texts.channel_text`: marking, headline, description,
instruction), segmented as the gateway will send it (`Units`).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.alerting.model import Channel, Info, Kind
from services.alerting.texts import channel_text
from services.channel.units import Units
from services.kernel.errors import InvalidArgument

#: Default cap: six segments are 918 GSM characters or 402 UCS-2 ones.
MAX_SMS_SEGMENTS = 6


def check_sms_segments(
    *,
    kind: Kind,
    infos: tuple[Info, ...],
    channels: Iterable[Channel],
    units: Units,
    max_segments: int,
    field: str = "spec.infos",
) -> None:
    """Refuse a language text of an SMS alert longer than `max_segments`, naming its info."""
    if Channel.SMS not in set(channels):
        return
    for i, info in enumerate(infos):
        text = channel_text(kind=kind, info=info)
        try:
            segments = units.sms(text)
        except ValueError as exc:
            raise InvalidArgument(f"{field}[{i}]", f"its SMS text cannot be sent: {exc}") from None
        if segments > max_segments:
            raise InvalidArgument(
                f"{field}[{i}].description",
                f"the {info.language} SMS text (headline, description and instruction) takes"
                f" {segments} segments, at most {max_segments}: shorten it",
            )

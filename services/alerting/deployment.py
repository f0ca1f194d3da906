"""Which channels this deployment delivers: an alert naming another one is refused at
CreateAlert, instead of being accepted, priced, and then never completing."""

from __future__ import annotations

from collections.abc import Iterable

from services.alerting.model import AlertSpec, Channel
from services.kernel.errors import FailedPrecondition

#: Channels whose services are deployed and configured today (a channel's service adds itself
#: to a deployment's TOCSIN_ENABLED_CHANNELS when it is deployed).
DEFAULT_ENABLED = "sms"


def parse_channels(text: str) -> frozenset[Channel]:
    """`sms,voice,email` as channels; ValueError names an unknown one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {c.value for c in Channel}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown channel {name!r} (one of {', '.join(sorted(known))})")
    return frozenset(Channel(n) for n in names)


def check_enabled(spec: AlertSpec, *, enabled: Iterable[Channel]) -> None:
    """FAILED_PRECONDITION naming the first channel of the alert this deployment does not have."""
    allowed = frozenset(enabled)
    for i, channel in enumerate(spec.channels):
        if channel not in allowed:
            raise FailedPrecondition(
                f"channel {channel.value} is not deployed here"
                f" (enabled: {', '.join(sorted(c.value for c in allowed)) or 'none'})",
                field=f"spec.channels[{i}]",
            )

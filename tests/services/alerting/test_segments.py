"""A cap on SMS segments per language text, refused at CreateAlert naming the field (issue 16)."""

from __future__ import annotations

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from gateways.smpp import segment_count
from services.alerting.model import Channel, Info, Kind
from services.alerting.segments import MAX_SMS_SEGMENTS, check_sms_segments
from services.channel.units import Units
from services.kernel.errors import InvalidArgument
from tests.services.alerting.conftest import Harness, spec

#: 4,000 characters of French with accents: about 60 UCS-2 segments.
LONG = ("Évacuez le quartier, fermez portes et fenêtres, écoutez la radio. " * 61)[:4000]


async def test_an_sms_alert_whose_text_takes_too_many_segments_is_refused(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    long = spec(languages=("nl", "fr"))
    long.infos[1].description = LONG
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-seg-0001", spec=long),
            metadata=client.metadata,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith("spec.infos[1].description: "), details
    assert f"at most {MAX_SMS_SEGMENTS}" in details

    # The same text over e-mail only costs no segment: accepted.
    mail = spec(languages=("nl", "fr"), channels=(pb.CHANNEL_EMAIL,))
    mail.infos[1].description = LONG
    created = await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key="key-seg-0002", spec=mail), metadata=client.metadata
    )
    assert created.id


def info(description: str, language: str = "fr") -> Info:
    """An info with this description."""
    return Info(
        language=language,
        event="Incendie",
        headline="Incendie au port",
        description=description,
        instruction="",
    )


def test_the_cap_counts_the_text_as_the_gateway_segments_it() -> None:
    units = Units(segment_count)
    # UCS-2: 67 characters a segment once there are several; the headline comes first.
    fits = info("ê" * (67 * 2 - len("Incendie au port ")))
    over = info("ê" * (67 * 2 - len("Incendie au port ") + 1))
    assert units.sms(f"Incendie au port {fits.description}") == 2
    sms = [Channel.SMS]
    check_sms_segments(
        kind=Kind.EMERGENCY, infos=(fits,), channels=sms, units=units, max_segments=2
    )
    with pytest.raises(InvalidArgument) as refused:
        check_sms_segments(
            kind=Kind.EMERGENCY, infos=(fits, over), channels=sms, units=units, max_segments=2
        )
    assert refused.value.field == "spec.infos[1].description"
    # An exercise's text opens with its marking ("EXERCICE - "), which the SMS carries too.
    with pytest.raises(InvalidArgument):
        check_sms_segments(
            kind=Kind.EXERCISE, infos=(fits,), channels=sms, units=units, max_segments=2
        )

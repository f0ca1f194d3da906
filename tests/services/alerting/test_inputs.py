"""Malformed input of every kind is INVALID_ARGUMENT naming its field, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import validation
from tests.services.alerting.conftest import Harness, spec


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_a_vertical_tab_pasted_into_a_text_is_refused_naming_the_field(
    harness: Harness,
) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    bad = spec()
    bad.infos[0].instruction = "Stay inside.\x0bClose the windows."
    error = await _refused(
        client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-vt-0001", spec=bad),
            metadata=client.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("spec.infos[0].instruction: ")
    assert "U+000B" in (error.details() or "")


async def test_malformed_values_are_invalid_argument_with_their_field(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    far = spec()
    far.expires.seconds = 10**15
    deep = spec(zone="[" * 50_000 + "]" * 50_000)
    nul_headline = spec(headline="Gas\x00leak")
    huge_area = spec()
    huge_area.area_description = "x" * 10_000
    cases = {
        "spec.expires": client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-far-0001", spec=far),
            metadata=client.metadata,
        ),
        "spec.zone_geojson": client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-deep-001", spec=deep),
            metadata=client.metadata,
        ),
        "spec.infos[0].headline": client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-nul-0001", spec=nul_headline),
            metadata=client.metadata,
        ),
        "spec.area_description": client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key="key-area-001", spec=huge_area),
            metadata=client.metadata,
        ),
        "page_token": client.alerts.ListAlerts(
            pb.ListAlertsRequest(page_token="9" * 40), metadata=client.metadata
        ),
        "username": client.auth.Login(pb.LoginRequest(username="x" * 256 * 1024, password="p")),
    }
    for field, call in cases.items():
        error = await _refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert (error.details() or "").startswith(f"{field}: "), error.details()
    nul_name = await _refused(
        client.auth.Login(pb.LoginRequest(username="ad\x00min", password="p"))
    )
    assert nul_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (nul_name.details() or "").startswith("username: ")


async def test_list_pages_are_bounded_in_bytes(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    long_text = spec()
    # By e-mail: an SMS text this long is refused by the segment cap before any page is listed.
    del long_text.channels[:]
    long_text.channels.append(pb.CHANNEL_EMAIL)
    for info in long_text.infos:
        info.description = "d" * validation.MAX_TEXT
        info.instruction = "i" * validation.MAX_TEXT
    per_alert = pb.Alert(spec=long_text).ByteSize()
    count = validation.MAX_PAGE_BYTES // per_alert + 3
    for i in range(count):
        await client.alerts.CreateAlert(
            pb.CreateAlertRequest(idempotency_key=f"key-page-{i:04d}", spec=long_text),
            metadata=client.metadata,
        )
    first = await client.alerts.ListAlerts(
        pb.ListAlertsRequest(page_size=500), metadata=client.metadata
    )
    assert first.ByteSize() <= validation.MAX_PAGE_BYTES + per_alert
    assert 0 < len(first.alerts) < count
    rest = await client.alerts.ListAlerts(
        pb.ListAlertsRequest(page_size=500, page_token=first.next_page_token),
        metadata=client.metadata,
    )
    ids = [a.id for a in first.alerts] + [a.id for a in rest.alerts]
    assert len(set(ids)) == count

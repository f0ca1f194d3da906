"""The ECBE client against the CBC simulator: osmo-cbc's JSON, its answers sorted."""

from __future__ import annotations

import pytest

from gateways.cbc.ecbe import EcbeClient, EcbeMessage, GeoScope, serial_number
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from stack.embedded import free_port
from telecom.answers import Outcome

pytestmark = pytest.mark.timeout(30)


def message(message_id: int = 4370, **changes: object) -> EcbeMessage:
    """A one-page message in the cells of one operator."""
    fields: dict[str, object] = {
        "cbe_name": "tocsin",
        "message_id": message_id,
        "geo_scope": GeoScope.CELL_WIDE,
        "msg_code": 513,
        "update_nr": 2,
        "dcs": 0x05,
        "pages": (b"\x0d" * 82,),
        "repetition_period": 60,
        "warning_period_sec": 3600,
        "cells": ("c1", "c2"),
    }
    fields.update(changes)
    return EcbeMessage(**fields)  # type: ignore[arg-type]


def test_json_is_the_cbc_message_of_osmo_cbc() -> None:
    """Field names and nesting as osmo-cbc's rest_api.c reads them."""
    body = message().to_json()
    assert body["cbe_name"] == "tocsin"
    assert body["category"] == "high_priority"
    assert body["repetition_period"] == 60
    assert body["num_of_bcast"] == 0
    assert body["warning_period_sec"] == 3600
    assert body["scope"] == {"scope_cells": {"cells": ["c1", "c2"]}}
    smscb = body["smscb_message"]
    assert smscb["message_id"] == 4370
    assert smscb["serial_nr"] == {
        "serial_nr_decoded": {"geo_scope": "cell_wide", "msg_code": 513, "update_nr": 2}
    }
    assert smscb["payload"] == {"payload_encoded": {"dcs": 5, "pages": ["0d" * 82]}}
    assert message(cells=()).to_json()["scope"] == {"scope_plmn": {}}


def test_serial_number_packs_scope_code_and_update() -> None:
    """TS 23.041 9.4.1.2.1: GS in the top 2 bits, message code 10, update number 4."""
    assert serial_number(geo_scope=GeoScope.CELL_WIDE, msg_code=513, update_nr=2) == (
        (3 << 14) | (513 << 4) | 2
    )


async def test_answers_201_409_404_200_and_400() -> None:
    """Created, active identifier, unknown on delete, deleted, and a refusal with its text."""
    sim = CbcSimulator(CbcConfig(plmn_only=True))
    port = await sim.start()
    client = EcbeClient(base_url=f"http://127.0.0.1:{port}", timeout_s=5)
    try:
        plmn = message(cells=())
        assert (await client.create(plmn)).outcome is Outcome.ACCEPTED
        again = await client.create(plmn)
        assert (again.outcome, again.status) == (Outcome.CONFLICT, 409)
        assert (await client.delete(4370)).outcome is Outcome.ACCEPTED
        gone = await client.delete(4370)
        assert (gone.outcome, gone.status) == (Outcome.UNKNOWN, 404)
        refused = await client.create(message())  # cells: osmo-cbc takes scope_plmn only
        assert (refused.outcome, refused.status) == (Outcome.REFUSED, 400)
        assert "scope_plmn" in refused.text
        too_long = await client.create(message(cells=(), pages=(b"\x00" * 83,)))
        assert too_long.outcome is Outcome.REFUSED
        assert "82 octets" in too_long.text
    finally:
        await client.close()
        await sim.stop()


async def test_no_cbc_and_server_errors_are_failures() -> None:
    """Connection refused and 5xx: FAILED (the service retries)."""
    client = EcbeClient(base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        down = await client.create(message())
        assert (down.outcome, down.status) == (Outcome.FAILED, 0)
    finally:
        await client.close()
    sim = CbcSimulator(CbcConfig(outage=True))
    port = await sim.start()
    client = EcbeClient(base_url=f"http://127.0.0.1:{port}", timeout_s=5)
    try:
        broken = await client.create(message())
        assert (broken.outcome, broken.status) == (Outcome.FAILED, 503)
    finally:
        await client.close()
        await sim.stop()

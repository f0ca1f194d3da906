"""Receipt ids written differently from the submit_sm_resp's still match, per bind setting; and
every submit_sm carries the validity period of its alert."""

from __future__ import annotations

import time

import pytest

from gateways.smpp import IdFormat, SubmitOutcome, SubmitRequest
from gateways.smpp.ids import canonical
from simulators.smsc.server import RINVEXPIRY
from tests.gateways.smpp.conftest import ClientFactory, SmscFactory


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("1a", IdFormat.HEX, "26"),
        ("001A", IdFormat.HEX, "26"),
        ("26", IdFormat.DECIMAL, "26"),
        ("0000000026", IdFormat.DECIMAL, "26"),
        ("abc-1", IdFormat.DECIMAL, "abc-1"),
        ("0A1b", IdFormat.TEXT, "0A1b"),
    ],
)
def test_canonical_ids(raw: str, fmt: IdFormat, expected: str) -> None:
    assert canonical(raw, fmt) == expected


@pytest.mark.parametrize("written", ["decimal", "hex_padded"])
async def test_receipts_in_another_form_match_their_submit_ids(
    smsc: SmscFactory, connect: ClientFactory, written: str
) -> None:
    sim = await smsc(receipt_id_format=written)
    receipt_format = IdFormat.DECIMAL if written == "decimal" else IdFormat.HEX
    bound = await connect(sim, submit_id_format=IdFormat.HEX, receipt_id_format=receipt_format)
    # Above 9 the hex ids contain letters, so the forms differ for most of these.
    res = await bound.client.submit_many(
        [SubmitRequest(f"+32470{i:06d}", text="Leave the zone") for i in range(40)]
    )
    await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 40, 10)
    assert {r.message_ids[0] for r in res} == {r.message_id for r in bound.receipts}


async def test_without_the_setting_such_receipts_do_not_match(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(receipt_id_format="decimal")
    bound = await connect(sim)
    res = await bound.client.submit_many(
        [SubmitRequest(f"+32470{i:06d}", text="Leave the zone") for i in range(20)]
    )
    await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 20, 10)
    assert {r.message_ids[0] for r in res} != {r.message_id for r in bound.receipts}


async def test_submit_sm_carries_the_alerts_expiry_and_a_stale_one_is_refused(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc()
    bound = await connect(sim)
    fresh, stale = await bound.client.submit_many(
        [
            SubmitRequest("+32470000001", text="Flood", expires_at=time.time() + 3600),
            SubmitRequest("+32470000002", text="Flood", expires_at=time.time() - 5),
        ]
    )
    assert fresh.outcome is SubmitOutcome.ACCEPTED
    assert stale.outcome is SubmitOutcome.PERMANENT
    assert stale.command_status == RINVEXPIRY
    assert sim.stale_submits == 1

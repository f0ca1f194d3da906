"""SmppClient against the SMSC simulator: binds, window, receipts, faults and recovery."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import uvloop

from gateways.smpp import (
    BindMode,
    CommandStatus,
    DeliveryReceipt,
    ReceiptState,
    SmppClient,
    SmppPool,
    SubmitOutcome,
    SubmitRequest,
    SubmitResult,
)
from gateways.smpp.client import smpp_time
from simulators.smsc import SmscConfig, SmscSimulator
from tests.gateways.smpp.conftest import ClientFactory, SmscFactory, bind_config


def _reqs(n: int, text: str = "Alert: leave the zone now") -> list[SubmitRequest]:
    return [SubmitRequest(f"+32470{i:06d}", text=text) for i in range(n)]


async def _until_accepted(client: SmppClient, reqs: list[SubmitRequest]) -> int:
    """Resubmit what is throttled, temporary or lost until accepted; return resubmissions."""
    pending = list(reqs)
    retries = 0
    while pending:
        results = await client.submit_many(pending)
        again = []
        for req, res in zip(pending, results, strict=True):
            assert res.outcome is not SubmitOutcome.PERMANENT, res
            if res.outcome is not SubmitOutcome.ACCEPTED:
                again.append(req.retry(res))
        if again:
            retries += len(again)
            await asyncio.sleep(0.05)  # back-off before resubmitting, as the SMS service does
        pending = again
    return retries


async def test_bind_submit_gsm_and_ucs2_concatenated(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(keep_texts=True)
    bound = await connect(sim)
    assert bound.states == [True]
    gsm = "Storm warning € [zone 3]: " + "stay inside. " * 20
    ucs2 = "Alerte : l\u2019eau monte, quittez la zone. " * 5
    res = await bound.client.submit_many(
        [
            SubmitRequest("+32470000001", text="Hello"),
            SubmitRequest("+32470000002", text=gsm),
            SubmitRequest("+32470000003", text=ucs2),
        ]
    )
    assert [r.outcome for r in res] == [SubmitOutcome.ACCEPTED] * 3
    assert [len(r.message_ids) for r in res] == [1, 2, 3]
    assert all(all(r.message_ids) for r in res)
    assert sim.texts == {"32470000001": ["Hello"], "32470000002": [gsm], "32470000003": [ucs2]}
    assert sim.messages == {"32470000001": 1, "32470000002": 1, "32470000003": 1}
    assert sum(sim.segments.values()) == 6


async def test_window_is_never_exceeded(smsc: SmscFactory, connect: ClientFactory) -> None:
    # The simulator answers 0x14 to any submit beyond 4 unanswered: none may come back.
    sim = await smsc(window=4, submit_latency_s=0.01)
    bound = await connect(sim, window=4)
    res = await bound.client.submit_many(_reqs(60))
    assert {r.outcome for r in res} == {SubmitOutcome.ACCEPTED}
    assert sim.statuses == {0: 60}


async def test_receipts_tlv_form(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc(undeliverable_share=0.3, expired_share=0.2)
    bound = await connect(sim)
    res = await bound.client.submit_many(_reqs(50))
    await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 50, 10)
    ids = {r.message_ids[0] for r in res}
    assert {r.message_id for r in bound.receipts} == ids
    states = {r.state for r in bound.receipts}
    assert states == {ReceiptState.DELIVERED, ReceiptState.UNDELIVERABLE, ReceiptState.EXPIRED}
    assert all(r.done_date is not None for r in bound.receipts)


async def test_receipts_text_form(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc(receipt_tlvs=False, undeliverable_share=0.5)
    bound = await connect(sim)
    res = await bound.client.submit_many(_reqs(20))
    await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 20, 10)
    by_id = {r.message_id: r for r in bound.receipts}
    assert set(by_id) == {r.message_ids[0] for r in res}
    assert {r.state for r in by_id.values()} == {
        ReceiptState.DELIVERED,
        ReceiptState.UNDELIVERABLE,
    }


async def test_receipt_before_submit_resp_is_delivered(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(submit_latency_s=0.3, receipt_delay_s=0.0)
    got: list[tuple[DeliveryReceipt, bool]] = []
    done: list[SubmitResult] = []

    async def on_receipt(receipt: DeliveryReceipt) -> None:
        got.append((receipt, bool(done)))

    client = SmppClient(
        bind_config(sim, name="early"),
        on_receipt=on_receipt,
    )
    await client.start()
    try:
        await client.wait_bound(5)
        done.append(await client.submit(SubmitRequest("+32470000001", text="early receipt")))
        await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 1, 5)
    finally:
        await client.close()
    assert got[0][0].message_id == done[0].message_ids[0]
    assert got[0][1] is False, "the receipt came after the submit_sm_resp"


async def test_throttled_is_reported_and_nothing_lost(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(max_rate=40)
    bound = await connect(sim, window=50)
    first = await bound.client.submit_many(_reqs(60))
    throttled = [r for r in first if r.outcome is SubmitOutcome.THROTTLED]
    assert throttled
    assert {r.command_status for r in throttled} == {CommandStatus.ESME_RTHROTTLED}
    sim.messages.clear()
    await _until_accepted(bound.client, _reqs(60))
    assert len(sim.messages) == 60
    assert max(sim.per_second.values()) <= 40


async def test_bind_dropped_mid_window_comes_back_bind_lost(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(submit_latency_s=0.2, drop_after_submits=10)
    bound = await connect(sim, window=20)
    reqs = _reqs(20)
    res = await bound.client.submit_many(reqs)
    lost = [r for r in res if r.outcome is SubmitOutcome.BIND_LOST]
    assert len(lost) >= 10
    assert {r.outcome for r in res} <= {SubmitOutcome.BIND_LOST, SubmitOutcome.ACCEPTED}
    assert all(r.command_status == -1 for r in lost)
    await bound.client.wait_bound(5)
    assert bound.states[:3] == [True, False, True]
    await _until_accepted(
        bound.client,
        [req for req, r in zip(reqs, res, strict=True) if r.outcome is SubmitOutcome.BIND_LOST],
    )
    assert sim.messages == {req.destination.lstrip("+"): 1 for req in reqs}


async def test_permanent_and_temporary_failures(smsc: SmscFactory, connect: ClientFactory) -> None:
    perm = await smsc(permanent_failure_share=1.0)
    temp = await smsc(temporary_failure_share=1.0, temporary_failure_status=0x08)
    nack = await smsc(generic_nack_share=1.0)
    p = await connect(perm)
    t = await connect(temp)
    n = await connect(nack)
    rp = await p.client.submit(SubmitRequest("+32470000001", text="x"))
    rt = await t.client.submit(SubmitRequest("+32470000001", text="x"))
    rn = await n.client.submit(SubmitRequest("+32470000001", text="x"))
    assert (rp.outcome, rp.command_status, rp.message_ids) == (SubmitOutcome.PERMANENT, 0x0B, [""])
    assert (rt.outcome, rt.command_status) == (SubmitOutcome.TEMPORARY, 0x08)
    assert (rn.outcome, rn.command_status) == (SubmitOutcome.TEMPORARY, 0x03)
    assert n.client.is_bound, "a generic_nack keeps the bind"


async def test_partial_multipart_resubmits_only_missing_segments(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc(temporary_failure_share=0.5, keep_texts=True, seed=3)
    bound = await connect(sim)
    text = "Flood warning. " * 40  # 4 segments
    req = SubmitRequest("+32470000009", text=text)
    retries = await _until_accepted(bound.client, [req])
    assert retries > 0
    assert sim.texts == {"32470000009": [text]}
    assert sum(sim.segments.values()) == 4


async def test_enquire_link_keeps_an_idle_bind(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc()
    bound = await connect(sim, enquire_link_s=0.05, dead_link_s=0.5)
    await sim.wait_for(lambda: sim.enquire_links >= 5, 5)
    assert bound.states == [True]
    assert sim.binds == 1


async def test_hung_smsc_drops_and_rebuilds_the_bind(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc()
    bound = await connect(sim, enquire_link_s=0.05, dead_link_s=0.3, response_timeout_s=0.3)
    sim.hung = True
    res = await bound.client.submit(SubmitRequest("+32470000001", text="into the void"))
    assert res.outcome is SubmitOutcome.BIND_LOST
    sim.hung = False
    await bound.client.wait_bound(5)
    res = await bound.client.submit(SubmitRequest("+32470000001", text="again"))
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert bound.states[:3] == [True, False, True]
    assert sim.messages == {"32470000001": 1}


async def test_garbage_drops_and_rebuilds_the_bind(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc()
    bound = await connect(sim)
    binds = sim.binds
    sim.send_garbage_now()
    await sim.wait_for(lambda: sim.binds > binds, 5)
    await bound.client.wait_bound(5)
    res = await bound.client.submit(SubmitRequest("+32470000001", text="after garbage"))
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert bound.states[:3] == [True, False, True]


async def test_garbage_mid_window(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc(submit_latency_s=0.1, garbage_after_submits=5)
    bound = await connect(sim, window=10)
    res = await bound.client.submit_many(_reqs(10))
    assert SubmitOutcome.BIND_LOST in {r.outcome for r in res}
    await _until_accepted(
        bound.client,
        [q for q, r in zip(_reqs(10), res, strict=True) if r.outcome is not SubmitOutcome.ACCEPTED],
    )
    assert len(sim.messages) == 10
    assert set(sim.messages.values()) == {1}


async def test_clean_unbind_on_close(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc(submit_latency_s=0.05)
    bound = await connect(sim)
    submits = asyncio.ensure_future(bound.client.submit_many(_reqs(5)))
    await sim.wait_for(lambda: sim.submit_pdus == 5, 5)
    await bound.client.close()
    assert {r.outcome for r in await submits} == {SubmitOutcome.ACCEPTED}
    assert sim.unbinds == 1
    assert bound.states == [True, False]
    await sim.wait_for(lambda: sim.bound_sessions == 0, 5)
    late = await bound.client.submit(SubmitRequest("+32470000001", text="too late"))
    assert late.outcome is SubmitOutcome.BIND_LOST


async def test_transmitter_receiver_pair(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc()
    bound = await connect(sim, mode=BindMode.PAIR)
    assert sim.bound_sessions == 2
    res = await bound.client.submit_many(_reqs(10))
    await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 10, 5)
    assert {r.message_id for r in bound.receipts} == {r.message_ids[0] for r in res}


async def test_refused_bind_reports_its_status(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc()
    bound = await connect(sim, wait=False, password="wrong")
    with pytest.raises(TimeoutError, match="ESME_RINVPASWD"):
        await bound.client.wait_bound(0.5)


async def test_pool_spreads_over_binds(smsc: SmscFactory) -> None:
    sim = await smsc(submit_latency_s=0.01)
    configs = [bind_config(sim, name=f"b{i}", window=5) for i in range(2)]
    states: list[tuple[str, bool]] = []
    pool = SmppPool(configs, on_bind_state=lambda name, up: states.append((name, up)))
    await pool.start()
    try:
        await pool.wait_bound(5, all_binds=True)
        res = await pool.submit_many(_reqs(40))
    finally:
        await pool.close()
    assert {r.outcome for r in res} == {SubmitOutcome.ACCEPTED}
    assert sim.binds == 2
    assert sorted(states) == [("b0", False), ("b0", True), ("b1", False), ("b1", True)]


async def test_hung_smsc_detected_by_enquire_link_alone(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    sim = await smsc()
    bound = await connect(sim, enquire_link_s=0.05, dead_link_s=0.3)
    binds = sim.binds
    sim.hung = True
    await sim.wait_for(lambda: sim.binds > binds, 5)  # a new bind: the old one was declared dead
    sim.hung = False
    await bound.client.wait_bound(5)
    assert bound.states[:3] == [True, False, True]


async def test_frozen_smsc_left_when_enquire_link_goes_unanswered(
    smsc: SmscFactory, connect: ClientFactory
) -> None:
    """An SMSC that hangs without closing (binds unanswered too) is left after the response
    timeout of one enquire_link, long before the dead-link timeout, and bound again once it
    answers (issue 16)."""
    sim = await smsc()
    bound = await connect(sim, enquire_link_s=0.05, dead_link_s=60.0, response_timeout_s=0.3)
    (session,) = sim.sessions
    sim.freeze()
    await sim.wait_for(lambda: session not in sim.sessions, 5)  # the client closed it
    sim.thaw()
    await bound.client.wait_bound(5)
    res = await bound.client.submit(SubmitRequest("+32470000001", text="after the hang"))
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert bound.states[:3] == [True, False, True]


def test_runs_under_uvloop() -> None:
    """The services run on uvloop, whose transports are not asyncio.Transport subclasses."""

    async def scenario() -> tuple[SubmitResult, int]:
        sim = SmscSimulator(SmscConfig())
        await sim.start()
        receipts: list[DeliveryReceipt] = []
        client = SmppClient(
            bind_config(sim, name="uv"),
            on_receipt=receipts.append,
        )
        await client.start()
        try:
            await client.wait_bound(5)
            res = await client.submit(SubmitRequest("+32470000001", text="uvloop"))
            await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 1, 5)
        finally:
            await client.close()
            await sim.stop()
        return res, len(receipts)

    res, receipts = uvloop.run(scenario())
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert receipts == 1


async def test_unbind_from_smsc_rebinds(smsc: SmscFactory, connect: ClientFactory) -> None:
    sim = await smsc()
    bound = await connect(sim)
    sim.unbind_all()
    await sim.wait_for(lambda: sim.binds == 2, 5)
    await bound.client.wait_bound(5)
    res = await bound.client.submit(SubmitRequest("+32470000001", text="after unbind"))
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert bound.states[:3] == [True, False, True]


async def test_failing_receipt_handler_gets_the_receipt_again(smsc: SmscFactory) -> None:
    sim = await smsc()
    calls: list[DeliveryReceipt] = []

    async def flaky(receipt: DeliveryReceipt) -> None:
        calls.append(receipt)
        if len(calls) == 1:
            raise RuntimeError("database down")

    client = SmppClient(
        bind_config(sim, name="flaky"),
        on_receipt=flaky,
    )
    await client.start()
    try:
        await client.wait_bound(5)
        res = await client.submit(SubmitRequest("+32470000001", text="receipt twice"))
        await sim.wait_for(lambda: sum(sim.receipts_acked.values()) == 1, 5)
    finally:
        await client.close()
    assert sim.receipts_refused == {CommandStatus.ESME_RX_T_APPN: 1}
    assert [r.message_id for r in calls] == res.message_ids * 2


async def test_binds_once_a_down_smsc_comes_up(smsc: SmscFactory, connect: ClientFactory) -> None:
    probe = await smsc()
    port = probe.port
    await probe.stop()
    down = SmscSimulator(SmscConfig(port=port))
    down.port = port  # the client fixture reads the port before the SMSC is up
    bound = await connect(down, wait=False)
    with pytest.raises(TimeoutError, match=r"Connect call failed|refused"):
        await bound.client.wait_bound(0.3)
    sim = await smsc(port=port)
    await bound.client.wait_bound(5)
    res = await bound.client.submit(SubmitRequest("+32470000001", text="finally"))
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert sim.binds == 1


def test_validity_is_rounded_up_to_the_tenth_never_before_the_expiry() -> None:
    # 2026-12-03 18:00:05.37 UTC: a validity of .3 would be past for a message written at .35.
    expiry = datetime(2026, 12, 3, 18, 0, 5, 370000, tzinfo=UTC).timestamp()
    assert smpp_time(expiry) == "2612031800054" + "00+"
    assert smpp_time(expiry - 0.37) == "2612031800050" + "00+"  # a whole second stays as is
    assert smpp_time(expiry + 0.63) == "2612031800060" + "00+"  # .99999 up to the next second


class Gate:
    """A session gate that records what the client did inside it, and can be kept shut."""

    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.open = asyncio.Event()
        self.open.set()
        self.events: list[tuple[str, str]] = []
        #: Unbinds the simulator had answered when each session left the gate.
        self.unbinds_at_exit: list[int] = []

    @contextlib.asynccontextmanager
    async def __call__(self, link: str) -> AsyncIterator[None]:
        await self.open.wait()
        self.events.append(("enter", link))
        try:
            yield
        finally:
            self.unbinds_at_exit.append(self.sim.unbinds)
            self.events.append(("exit", link))


async def test_every_session_opens_inside_the_gate_and_leaves_it_closed(
    smsc: SmscFactory,
) -> None:
    sim = await smsc()
    gate = Gate(sim)
    client = SmppClient(bind_config(sim, name="g"), session_gate=gate)
    await client.start()
    try:
        await client.wait_bound(5)
        assert gate.events == [("enter", "g/transceiver")]
        sim.drop_connections()  # the SMSC drops the bind: the rebind goes through the gate again
        await sim.wait_for(lambda: sim.binds == 2, 5)
        await client.wait_bound(5)
        assert gate.events == [
            ("enter", "g/transceiver"),
            ("exit", "g/transceiver"),
            ("enter", "g/transceiver"),
        ]
    finally:
        await client.close()
    assert gate.events[-1] == ("exit", "g/transceiver")
    assert gate.unbinds_at_exit == [0, 1]  # on close, left only once the unbind was answered


async def test_a_shut_gate_keeps_the_bind_from_connecting_and_close_still_returns(
    smsc: SmscFactory,
) -> None:
    sim = await smsc()
    gate = Gate(sim)
    gate.open.clear()
    client = SmppClient(bind_config(sim, name="g", mode=BindMode.PAIR), session_gate=gate)
    await client.start()
    with pytest.raises(TimeoutError):
        await client.wait_bound(0.3)
    assert not sim.sessions  # not even a TCP connection without the gate's leave
    gate.open.set()
    await client.wait_bound(5)
    assert sorted(gate.events) == [("enter", "g/receiver"), ("enter", "g/transmitter")]
    await client.close()

    shut = Gate(sim)
    shut.open.clear()
    waiting = SmppClient(bind_config(sim, name="w"), session_gate=shut)
    await waiting.start()
    async with asyncio.timeout(5):
        await waiting.close()  # a bind waiting at the gate does not hold the client open
    assert shut.events == []

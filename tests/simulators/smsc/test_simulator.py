"""The SMSC simulator itself: counting, reassembly, rate windows and the command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from gateways.smpp import BindConfig, SmppClient, SubmitOutcome, SubmitRequest
from simulators.smsc import SmscConfig, SmscSimulator


def _config(port: int, **fields: object) -> BindConfig:
    settings: dict[str, object] = {
        "name": "sim-test",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "tocsin",
        "password": "secret",
        "reconnect_min_s": 0.02,
        "reconnect_max_s": 0.2,
        **fields,
    }
    return BindConfig(**settings)  # type: ignore[arg-type]


async def test_counts_full_messages_segments_and_duplicates() -> None:
    sim = SmscSimulator(SmscConfig(keep_texts=True))
    port = await sim.start()
    client = SmppClient(_config(port))
    await client.start()
    try:
        await client.wait_bound(5)
        long_text = "Evacuate now. " * 30  # 3 segments
        res = await client.submit_many(
            [
                SubmitRequest("+32470000001", text=long_text),
                SubmitRequest("+32470000002", text="short"),
                SubmitRequest("+32470000002", text="short"),
            ]
        )
        assert {r.outcome for r in res} == {SubmitOutcome.ACCEPTED}
        # A resubmission of one segment alone does not complete a second message.
        again = await client.submit(
            SubmitRequest(
                "+32470000001", text=long_text, reference=res[0].reference, segments=frozenset({1})
            )
        )
        assert again.outcome is SubmitOutcome.ACCEPTED
        assert again.message_ids[0] == again.message_ids[2] == ""
        assert again.missing() == frozenset()
    finally:
        await client.close()
        await sim.stop()
    assert sim.messages == {"32470000001": 1, "32470000002": 2}
    assert sim.segments == {"32470000001": 4, "32470000002": 2}
    assert sim.texts["32470000001"] == [long_text]
    assert sim.submit_pdus == 6
    assert sum(sim.per_second.values()) == 6


async def test_rate_window_holds() -> None:
    sim = SmscSimulator(SmscConfig(max_rate=25))
    port = await sim.start()
    client = SmppClient(_config(port, window=100))
    await client.start()
    try:
        await client.wait_bound(5)
        res = await client.submit_many(
            [SubmitRequest(f"+3247{i:07d}", text="x") for i in range(60)]
        )
    finally:
        await client.close()
        await sim.stop()
    accepted = sum(r.outcome is SubmitOutcome.ACCEPTED for r in res)
    throttled = sum(r.outcome is SubmitOutcome.THROTTLED for r in res)
    assert accepted + throttled == 60
    assert max(sim.per_second.values()) <= 25
    assert sim.statuses[0x58] == throttled


async def test_command_line_runs_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.smsc",
        "--port",
        "0",
        "--name",
        "opA",
        "--submit-latency-s",
        "0.001",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            ready = json.loads(await proc.stdout.readline())
            assert ready["event"] == "listening"
            client = SmppClient(_config(ready["port"]))
            await client.start()
            await client.wait_bound(5)
            res = await client.submit(SubmitRequest("+32470000001", text="via CLI"))
            await client.close()
            proc.send_signal(signal.SIGTERM)
            stopped = json.loads(await proc.stdout.readline())
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert res.outcome is SubmitOutcome.ACCEPTED
    assert stopped["event"] == "stopped"
    assert stopped["messages"] == 1
    assert stopped["binds"] == 1

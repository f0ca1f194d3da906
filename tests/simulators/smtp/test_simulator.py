"""The relay simulator: refusals that heal, recipient limits, and the command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime

from gateways.smtp import Content, Disposition, RelayConfig, SmtpPool, compose
from simulators.smtp import RelayConfig as SimConfig
from simulators.smtp import RelaySimulator

MESSAGE = compose(
    Content(
        from_name="BE-Alert",
        from_address="alert@be-alert.test",
        subject="s",
        text="t",
        language="en",
        message_id="<m@be-alert.test>",
        date=datetime(2026, 12, 3, tzinfo=UTC),
    )
)


async def test_temporary_refusals_heal_after_the_given_number_of_tries() -> None:
    sim = RelaySimulator(SimConfig(temporary_pattern="^slow", temporary_times=2))
    await sim.start()
    pool = SmtpPool(RelayConfig(host="127.0.0.1", port=sim.port, tls="none", connections=1))
    try:
        answers = [
            (
                await pool.send(
                    envelope_from="b@x.test", recipients=["slow@x.test"], message=MESSAGE
                )
            )[0].disposition
            for _ in range(3)
        ]
    finally:
        await pool.close()
        await sim.stop()
    assert answers == [Disposition.TEMPORARY, Disposition.TEMPORARY, Disposition.ACCEPTED]
    assert sim.received == {"slow@x.test": 1}
    assert sim.refused_temporary == {"slow@x.test": 2}


async def test_recipients_above_the_limit_are_told_to_come_back() -> None:
    sim = RelaySimulator(SimConfig(max_recipients=3))
    await sim.start()
    pool = SmtpPool(RelayConfig(host="127.0.0.1", port=sim.port, tls="none", connections=1))
    try:
        replies = await pool.send(
            envelope_from="b@x.test", recipients=[f"u{i}@x.test" for i in range(5)], message=MESSAGE
        )
    finally:
        await pool.close()
        await sim.stop()
    assert [r.code for r in replies] == [250, 250, 250, 452, 452]
    assert len(sim.received) == 3


async def test_the_command_line_serves_and_reports_its_counters() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.smtp",
        "--port",
        "0",
        "--permanent-pattern",
        "^no@",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
        assert ready["event"] == "listening"
        pool = SmtpPool(
            RelayConfig(host="127.0.0.1", port=ready["port"], tls="none", connections=1)
        )
        await pool.send(
            envelope_from="b@x.test", recipients=["a@x.test", "no@x.test"], message=MESSAGE
        )
        await pool.close()
        proc.send_signal(signal.SIGTERM)
        stopped = json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=30))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert stopped["event"] == "stopped"
    assert stopped["received"] == 1
    assert stopped["refused_permanent"] == 1

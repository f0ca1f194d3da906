"""Run one simulated SMSC until SIGTERM/SIGINT: `python -m simulators.smsc --port 2775 --name opA`.

Prints one JSON line `{"event": "listening", ...}` when ready and one `{"event": "stopped", ...}`
with the counters when it stops. Faults on demand (bench/faults.py): SIGUSR1 freezes it (it hangs
without closing: nothing answered, binds included) and thaws it again; SIGUSR2 writes garbage (a
malformed PDU) to every session.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
from pathlib import Path

import uvloop

from simulators import cli
from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("simulators.smsc", __doc__)
    statuses = ("temporary_failure_status", "permanent_failure_status")
    cli.add_config_flags(p, SmscConfig, types=dict.fromkeys(statuses, lambda v: int(v, 0)))
    return p


async def _serve(config: SmscConfig) -> None:
    sim = SmscSimulator(config)
    faults = {
        signal.SIGUSR1: lambda: sim.thaw() if sim.frozen else sim.freeze(),
        signal.SIGUSR2: sim.send_garbage_now,
    }
    await cli.serve(sim, name=config.name, signals=faults)
    if sim.arrivals is not None:
        text = json.dumps(sim.arrivals)
        await asyncio.to_thread(Path(config.arrivals_file).write_text, text, encoding="utf-8")
    cli.say(
        "stopped",
        name=config.name,
        submit_pdus=sim.submit_pdus,
        messages=sum(sim.messages.values()),
        segments=sum(sim.segments.values()),
        receipts_sent=sum(sim.receipts_sent.values()),
        binds=sim.binds,
        stale_submits=sim.stale_submits,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit code."""
    args = cli.arguments(_parser(), argv)
    # Fewer cycle collections: each submit allocates a few objects that refcounting frees, and
    # the default threshold ran a collection every few hundred PDUs on the cores it measures.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # uvloop as the services use: the simulator shares the cores with what it measures.
    uvloop.run(_serve(SmscConfig(**args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path

import uvloop

from simulators.smsc.config import SmscConfig
from simulators.smsc.server import SmscSimulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.smsc", description=__doc__)
    for f in fields(SmscConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if f.name == "host":
            continue
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default)
        elif f.name in ("temporary_failure_status", "permanent_failure_status"):
            p.add_argument(flag, type=lambda v: int(v, 0), default=default)
        elif isinstance(default, float):
            p.add_argument(flag, type=float, default=default)
        elif isinstance(default, int) or default is None:
            p.add_argument(flag, type=int, default=default)
        else:
            p.add_argument(flag, default=default)
    p.add_argument("--log-level", default="INFO")
    return p


async def _serve(config: SmscConfig) -> None:
    sim = SmscSimulator(config)
    port = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: sim.thaw() if sim.frozen else sim.freeze())
    loop.add_signal_handler(signal.SIGUSR2, sim.send_garbage_now)
    print(json.dumps({"event": "listening", "name": config.name, "port": port}), flush=True)
    await stop.wait()
    await sim.stop()
    summary = {
        "event": "stopped",
        "name": config.name,
        "submit_pdus": sim.submit_pdus,
        "messages": sum(sim.messages.values()),
        "segments": sum(sim.segments.values()),
        "receipts_sent": sum(sim.receipts_sent.values()),
        "binds": sim.binds,
        "stale_submits": sim.stale_submits,
    }
    if sim.arrivals is not None:
        text = json.dumps(sim.arrivals)
        await asyncio.to_thread(Path(config.arrivals_file).write_text, text, encoding="utf-8")
    print(json.dumps(summary), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit code."""
    args = vars(_parser().parse_args(argv))
    logging.basicConfig(level=args.pop("log_level"), stream=sys.stderr)
    # Fewer cycle collections: each submit allocates a few objects that refcounting frees, and
    # the default threshold ran a collection every few hundred PDUs on the cores it measures.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # uvloop as the services use: the simulator shares the cores with what it measures.
    uvloop.run(_serve(SmscConfig(**args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

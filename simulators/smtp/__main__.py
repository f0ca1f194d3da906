"""Run one simulated SMTP relay until SIGTERM/SIGINT: `python -m simulators.smtp --port 2525`.

Prints one JSON line `{"event": "listening", ...}` when ready and one `{"event": "stopped", ...}`
with the counters when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import fields

import uvloop

from simulators.smtp.config import RelayConfig
from simulators.smtp.server import RelaySimulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.smtp", description=__doc__)
    for f in fields(RelayConfig):
        if f.name == "host":
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif isinstance(f.default, float):
            p.add_argument(flag, type=float, default=f.default)
        elif isinstance(f.default, int):
            p.add_argument(flag, type=int, default=f.default)
        else:
            p.add_argument(flag, default=f.default)
    p.add_argument("--log-level", default="INFO")
    return p


def counters(sim: RelaySimulator) -> dict[str, int]:
    """What the relay saw, for the summary line and the benchmark."""
    return {
        "transactions": sim.transactions,
        "received": sum(sim.received.values()),
        "recipients": len(sim.received),
        "duplicates": sum(n - 1 for n in sim.received.values() if n > 1),
        "refused_temporary": sum(sim.refused_temporary.values()),
        "refused_permanent": sum(sim.refused_permanent.values()),
        "drops": sim.drops,
        "connections": sim.connections,
        "bounces_sent": sim.bounces_sent,
    }


async def _serve(config: RelayConfig) -> None:
    sim = RelaySimulator(config)
    port = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "name": config.name, "port": port}), flush=True)
    await stop.wait()
    await sim.stop()
    print(json.dumps({"event": "stopped", "name": config.name, **counters(sim)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit code."""
    args = vars(_parser().parse_args(argv))
    logging.basicConfig(level=args.pop("log_level"), stream=sys.stderr)
    uvloop.run(_serve(RelayConfig(**args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run one simulated SMTP relay until SIGTERM/SIGINT: `python -m simulators.smtp --port 2525`.

Prints one JSON line `{"event": "listening", ...}` when ready and one `{"event": "stopped", ...}`
with the counters when it stops.
"""

from __future__ import annotations

import argparse
import sys

import uvloop

from simulators import cli
from simulators.smtp.config import RelayConfig
from simulators.smtp.server import RelaySimulator


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("simulators.smtp", __doc__)
    cli.add_config_flags(p, RelayConfig, negatable=True)
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
    await cli.serve(sim, name=config.name)
    cli.say("stopped", name=config.name, **counters(sim))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit code."""
    args = cli.arguments(_parser(), argv)
    uvloop.run(_serve(RelayConfig(**args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the simulated contact centre: `python -m simulators.contactcentre --port 8780`.

Prints one JSON line `{"event": "listening", ...}` when ready and `{"event": "stopped", ...}`
when it stops (SIGTERM/SIGINT). `--calls nl=300,fr=120` sets calls per hour per language line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from simulators import cli
from simulators.contactcentre.config import ContactCentreConfig
from simulators.contactcentre.server import ContactCentreSimulator


def _calls(text: str) -> dict[str, int]:
    pairs = [p.split("=", 1) for p in text.split(",") if p]
    return {lang.strip(): int(n) for lang, n in pairs}


def _parser() -> argparse.ArgumentParser:
    d = ContactCentreConfig()
    p = cli.parser("simulators.contactcentre", __doc__)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--number", default=d.number)
    p.add_argument("--ack-after-s", type=float, default=d.ack_after_s)
    p.add_argument("--open-after-s", type=float, default=d.open_after_s)
    p.add_argument("--never-open", action="store_true")
    p.add_argument("--calls-per-hour", type=int, default=d.calls_per_hour)
    p.add_argument("--calls", type=_calls, default={})
    p.add_argument("--aht-s", type=float, default=d.aht_s)
    p.add_argument("--abandon-ratio", type=float, default=d.abandon_ratio)
    p.add_argument("--close-after-s", type=float, default=d.close_after_s)
    return p


async def _serve(config: ContactCentreConfig) -> None:
    sim = ContactCentreSimulator(config)
    await cli.serve(sim)
    cli.say("stopped", lines=len(sim.lines))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until a signal, return the exit code."""
    asyncio.run(_serve(ContactCentreConfig(**cli.arguments(_parser(), argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

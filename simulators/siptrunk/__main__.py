"""Run one simulated SIP trunk until SIGTERM/SIGINT: `python -m simulators.siptrunk --port 5060`.

Prints one JSON line `{"event": "listening", ...}` when ready and one `{"event": "stopped", ...}`
with its counters when it stops.
"""

from __future__ import annotations

import argparse

import uvloop

from simulators import cli
from simulators.siptrunk.config import TrunkConfig
from simulators.siptrunk.server import SipTrunkSimulator


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("simulators.siptrunk", __doc__)
    cli.add_config_flags(p, TrunkConfig, skip=("host", "scripts", "redirects", "keep_audio"))
    return p


async def _serve(config: TrunkConfig) -> None:
    sim = SipTrunkSimulator(config)
    await cli.serve(sim)
    cli.say("stopped", **sim.summary())


def main() -> None:
    """Parse flags and serve."""
    args = cli.arguments(_parser(), log_format="%(asctime)s %(name)s %(message)s")
    uvloop.run(_serve(TrunkConfig(**args)))


if __name__ == "__main__":
    main()

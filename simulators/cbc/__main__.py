"""Run one simulated operator platform: `python -m simulators.cbc --port 8101 --name opA`.

Serves osmo-cbc's ECBE REST API (and the LB-SMS API unless --no-lbsms) on 127.0.0.1. Prints one
JSON line `{"event": "listening", ...}` when ready and `{"event": "stopped", ...}` with what it
saw when it stops.
"""

from __future__ import annotations

import argparse
import asyncio

from simulators import cli
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("simulators.cbc", __doc__)
    p.add_argument("--name", default="cbc")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-s", type=float, default=0.0)
    p.add_argument("--refuse-share", type=float, default=0.0)
    p.add_argument("--error-share", type=float, default=0.0)
    p.add_argument("--conflict-all", action="store_true")
    p.add_argument("--outage", action="store_true")
    p.add_argument("--plmn-only", action="store_true")
    p.add_argument("--phones-per-cell", type=int, default=250)
    p.add_argument("--phones-per-km2", type=int, default=400)
    p.add_argument(
        "--lbsms-zone",
        choices=("cells", "polygon", "any"),
        default="any",
        help="the zone kind the LB-SMS platform takes (any: cells or polygon)",
    )
    p.add_argument("--no-lbsms", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    return p


async def _serve(config: CbcConfig) -> None:
    sim = CbcSimulator(config)
    await cli.serve(sim, name=config.name)
    cli.say(
        "stopped",
        name=config.name,
        created=len(sim.state.created()),
        message_ids=sorted({m["message_id"] for m in sim.state.created()}),
        deleted=sum(1 for e in sim.state.events if e.method == "DELETE" and e.status == 200),
        active=sorted(sim.state.active),
        lbsms_requests=len(sim.lbsms.requests),
        lbsms_zones=sorted({kind for r in sim.lbsms.requests.values() for kind in r["zone"]}),
    )


def main() -> None:
    """Parse the flags and serve until SIGTERM/SIGINT."""
    args = cli.arguments(_parser())
    zone = args.pop("lbsms_zone")
    lbsms = not args.pop("no_lbsms")
    config = CbcConfig(
        **args, lbsms_zones=("cells", "polygon") if zone == "any" else (zone,), lbsms=lbsms
    )
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()

"""Run one simulated operator platform: `python -m simulators.cbc --port 8101 --name opA`.

Serves osmo-cbc's ECBE REST API (and the LB-SMS API unless --no-lbsms) on 127.0.0.1. Prints one
JSON line `{"event": "listening", ...}` when ready and `{"event": "stopped", ...}` with what it
saw when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal

from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.cbc", description=__doc__)
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
    p.add_argument("--log-level", default="INFO")
    return p


async def _serve(config: CbcConfig) -> None:
    sim = CbcSimulator(config)
    port = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "name": config.name, "port": port}), flush=True)
    await stop.wait()
    await sim.stop()
    summary = {
        "event": "stopped",
        "name": config.name,
        "created": len(sim.state.created()),
        "message_ids": sorted({m["message_id"] for m in sim.state.created()}),
        "deleted": sum(1 for e in sim.state.events if e.method == "DELETE" and e.status == 200),
        "active": sorted(sim.state.active),
        "lbsms_requests": len(sim.lbsms.requests),
        "lbsms_zones": sorted({kind for r in sim.lbsms.requests.values() for kind in r["zone"]}),
    }
    print(json.dumps(summary), flush=True)


def main() -> None:
    """Parse the flags and serve until SIGTERM/SIGINT."""
    args = _parser().parse_args()
    logging.basicConfig(level=args.log_level)
    config = CbcConfig(
        name=args.name,
        port=args.port,
        latency_s=args.latency_s,
        refuse_share=args.refuse_share,
        error_share=args.error_share,
        conflict_all=args.conflict_all,
        outage=args.outage,
        plmn_only=args.plmn_only,
        phones_per_cell=args.phones_per_cell,
        phones_per_km2=args.phones_per_km2,
        lbsms_zones=("cells", "polygon") if args.lbsms_zone == "any" else (args.lbsms_zone,),
        lbsms=not args.no_lbsms,
        seed=args.seed,
    )
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()

"""Run one simulated SIP trunk until SIGTERM/SIGINT: `python -m simulators.siptrunk --port 5060`.

Prints one JSON line `{"event": "listening", ...}` when ready and one `{"event": "stopped", ...}`
with its counters when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from dataclasses import fields

import uvloop

from simulators.siptrunk.config import TrunkConfig
from simulators.siptrunk.server import SipTrunkSimulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulators.siptrunk", description=__doc__)
    for f in fields(TrunkConfig):
        if f.name in ("host", "scripts", "redirects", "keep_audio"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=f.default)
        elif isinstance(f.default, float):
            p.add_argument(flag, type=float, default=f.default)
        elif isinstance(f.default, int):
            p.add_argument(flag, type=int, default=f.default)
        else:
            p.add_argument(flag, default=f.default)
    p.add_argument("--log-level", default="INFO")
    return p


async def _serve(config: TrunkConfig) -> None:
    sim = SipTrunkSimulator(config)
    port = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"event": "listening", "port": port}), flush=True)
    await stop.wait()
    await sim.stop()
    print(json.dumps({"event": "stopped", **sim.summary()}), flush=True)


def main() -> None:
    """Parse flags and serve."""
    args = vars(_parser().parse_args())
    logging.basicConfig(level=args.pop("log_level"), format="%(asctime)s %(name)s %(message)s")
    uvloop.run(_serve(TrunkConfig(**args)))


if __name__ == "__main__":
    main()

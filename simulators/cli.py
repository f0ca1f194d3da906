"""What every simulator's command line shares (`python -m simulators.<name>`).

A parser whose flags may come from the simulator's config dataclass, `--log-level` last and the
log on stderr, and serving until SIGTERM/SIGINT: one JSON line `{"event": "listening", ...}` on
stdout once it listens; after it stops, the simulator says what it saw in an `{"event":
"stopped", ...}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from typing import Any, Protocol


class Simulator(Protocol):
    """A simulator as its command line runs it."""

    async def start(self) -> int:
        """Listen; the port it listens on."""
        ...

    async def stop(self) -> None:
        """Stop listening and close what is open."""
        ...


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The simulator's parser: `python -m <module>`, its docstring as the description."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc)


def add_config_flags(
    p: argparse.ArgumentParser,
    config: type[Any],
    *,
    skip: Collection[str] = ("host",),
    negatable: bool = False,
    types: Mapping[str, Callable[[str], object]] | None = None,
) -> None:
    """One flag per field of the `config` dataclass (`--max-rate` for `max_rate`), the field's
    default its default: a boolean is a switch (`--x/--no-x` when `negatable`), a float or an int
    (or None) typed, the rest a string; `types` names the type of a field where that is not it."""
    for f in fields(config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            switch = argparse.BooleanOptionalAction if negatable else "store_true"
            p.add_argument(flag, action=switch, default=default)
        elif types is not None and f.name in types:
            p.add_argument(flag, type=types[f.name], default=default)
        elif isinstance(default, float):
            p.add_argument(flag, type=float, default=default)
        elif isinstance(default, int) or default is None:
            p.add_argument(flag, type=int, default=default)
        else:
            p.add_argument(flag, default=default)


def arguments(
    p: argparse.ArgumentParser,
    argv: list[str] | None = None,
    *,
    log_format: str = logging.BASIC_FORMAT,
) -> dict[str, Any]:
    """Add `--log-level`, parse `argv` (None: the command line), log at that level on stderr;
    the other flags' values by name."""
    p.add_argument("--log-level", default="INFO")
    args = vars(p.parse_args(argv))
    logging.basicConfig(level=args.pop("log_level"), format=log_format, stream=sys.stderr)
    return args


def say(event: str, **details: object) -> None:
    """Print one JSON line `{"event": event, **details}` on stdout, at once."""
    print(json.dumps({"event": event, **details}), flush=True)


async def serve(
    sim: Simulator,
    *,
    name: str | None = None,
    signals: Mapping[signal.Signals, Callable[[], object]] | None = None,
) -> None:
    """Start `sim`, say where it listens (with its `name` if given), serve until SIGTERM or
    SIGINT, then stop it. `signals`: more handlers (a fault on demand, for one)."""
    port = await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for sig, handler in (signals or {}).items():
        loop.add_signal_handler(sig, handler)
    named = {} if name is None else {"name": name}
    say("listening", **named, port=port)
    await stop.wait()
    await sim.stop()

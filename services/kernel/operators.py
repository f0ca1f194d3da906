"""The operators file: the one list of a deployment's mobile operators (docs/operators.md).

    [operators.proximus]
    prefixes = ["3247", "3246"]                          # SMS routes (national, after +32)
    binds = [{ host = "smsc.example", port = 2775 }]     # SMPP binds of the SMS service
    max_sessions = 24                                    # SMPP sessions it allows, all pods
    [operators.proximus.cbc]                             # a channel's own section (later)
    url = "https://cbc.proximus.example/cap"

Each table under `operators` is one operator, named as everywhere else (rate-limit buckets
`sms:op:<name>`, metrics' `operator` label, TOCSIN_SMPP_<NAME>_* accounts). `prefixes`, `binds`
and `max_sessions` belong to SMS; any sub-table is a section of another channel, read by that
channel's service, and kept here as it was written. The order of the tables is the routing
order: the first operator takes the numbers that no prefix matches, unless the service names
another default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Operator names: what bucket names, metric labels and environment variables can all carry.
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class OperatorsFileError(ValueError):
    """The operators file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Bind:
    """One SMPP bind as the file writes it; what it leaves out, the SMS settings supply."""

    host: str
    port: int
    #: Every other key of the bind (name, window, system_id, password), as written.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operator:
    """One mobile operator of the deployment."""

    name: str
    #: National number prefixes (digits after +32) routed to this operator over SMS.
    prefixes: tuple[str, ...] = ()
    binds: tuple[Bind, ...] = ()
    #: SMPP sessions the operator allows tocsin at once, over every sms process; None: no limit.
    max_sessions: int | None = None
    #: Channel sections (`cbc`, `lbsms`, `voice`, ...) -> their settings, as written.
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def load_operators(path: Path) -> tuple[Operator, ...]:
    """The operators of the file at `path`, in its order; OperatorsFileError names a bad field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OperatorsFileError(f"{path}: {exc}") from None
    return parse_operators(data, source=str(path))


def parse_operators(data: Mapping[str, Any], *, source: str) -> tuple[Operator, ...]:
    """The operators of a parsed operators file (`source` names it in errors)."""
    unknown = set(data) - {"operators"}
    if unknown:
        raise OperatorsFileError(f"{source}: unknown top-level keys {sorted(unknown)}")
    tables = data.get("operators", {})
    if not isinstance(tables, dict) or not tables:
        raise OperatorsFileError(f"{source}: no [operators.<name>] table")
    return tuple(_operator(name, table, source) for name, table in tables.items())


def _operator(name: str, table: Any, source: str) -> Operator:
    where = f"{source}: operators.{name}"
    if not NAME.fullmatch(name):
        raise OperatorsFileError(f"{where}: the name must match {NAME.pattern}")
    if not isinstance(table, dict):
        raise OperatorsFileError(f"{where}: must be a table")
    prefixes = table.get("prefixes", [])
    if not isinstance(prefixes, list) or not all(
        isinstance(p, str) and p.removeprefix("+").isdigit() for p in prefixes
    ):
        raise OperatorsFileError(f"{where}.prefixes: must be a list of digit strings")
    binds = table.get("binds", [])
    if not isinstance(binds, list):
        raise OperatorsFileError(f"{where}.binds: must be a list of tables")
    max_sessions = table.get("max_sessions")
    if max_sessions is not None and (
        not isinstance(max_sessions, int) or isinstance(max_sessions, bool) or max_sessions < 1
    ):
        raise OperatorsFileError(f"{where}.max_sessions: must be a positive whole number")
    sections: dict[str, Mapping[str, Any]] = {}
    for key, value in table.items():
        if key in ("prefixes", "binds", "max_sessions"):
            continue
        if not isinstance(value, dict):
            raise OperatorsFileError(f"{where}.{key}: unknown key (a channel section is a table)")
        sections[key] = value
    return Operator(
        name=name,
        prefixes=tuple(p.removeprefix("+") for p in prefixes),
        binds=tuple(_bind(b, f"{where}.binds[{i}]") for i, b in enumerate(binds)),
        max_sessions=max_sessions,
        sections=sections,
    )


def _bind(value: Any, where: str) -> Bind:
    if not isinstance(value, dict):
        raise OperatorsFileError(f"{where}: must be a table")
    port = value.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise OperatorsFileError(f"{where}.port: must be a port number")
    host = value.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise OperatorsFileError(f"{where}.host: must be a host name")
    extra = {k: v for k, v in value.items() if k not in ("host", "port")}
    return Bind(host=host, port=port, extra=extra)


def routes(operators: tuple[Operator, ...]) -> str:
    """The operators' prefixes in the SMS service's TOCSIN_ROUTES form: `a=3247,3246;b=3249`."""
    return ";".join(f"{op.name}={','.join(op.prefixes)}" for op in operators if op.prefixes)


def dump_operators(operators: tuple[Operator, ...]) -> str:
    """The operators file text for `operators` (load_operators reads it back unchanged)."""
    lines: list[str] = []
    for op in operators:
        lines.append(f"[operators.{op.name}]")
        lines.append(f"prefixes = {_value(list(op.prefixes))}")
        binds = [{"host": b.host, "port": b.port, **b.extra} for b in op.binds]
        lines.append(f"binds = {_value(binds)}")
        if op.max_sessions is not None:
            lines.append(f"max_sessions = {op.max_sessions}")
        for section, settings in op.sections.items():
            lines.append(f"[operators.{op.name}.{section}]")
            lines.extend(f"{key} = {_value(value)}" for key, value in settings.items())
        lines.append("")
    return "\n".join(lines)


def _value(value: Any) -> str:
    """A TOML value: strings, numbers, booleans, and lists and inline tables of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _value(key)

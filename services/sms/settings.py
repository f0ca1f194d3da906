"""Settings of the SMS service: operators and their binds, routing, batching, retries."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator, model_validator

from services.channel.settings import ChannelSettings
from services.kernel.operators import load_operators
from services.sms import keys
from services.sms.clients import Client, parse_clients

#: Belgian mobile ranges by the operator that holds them (national number prefixes after +32).
DEFAULT_ROUTES = "proximus=3247,3246;orange=3249;base=3248,32456"


@dataclass(frozen=True, slots=True)
class BindSpec:
    """One SMPP bind to an operator's SMSC."""

    name: str  # bind name (metrics label), e.g. `proximus-0`
    host: str  # SMSC host
    port: int  # SMSC port
    system_id: str  # SMPP account
    password: str  # SMPP password
    window: int  # submit_sm outstanding at most
    #: How the SMSC writes message ids in submit_sm_resp and in receipts (one of ID_FORMATS).
    submit_id_format: str = "text"
    receipt_id_format: str = "text"


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """An operator: its binds and the number prefixes routed to it."""

    name: str
    binds: tuple[BindSpec, ...]
    prefixes: tuple[str, ...]
    #: SMPP sessions the operator allows over every sms process (leases in Redis, sessions.py);
    #: None: no limit (only the operators file can set one).
    max_sessions: int | None = None


#: TOCSIN_SMPP_<OPERATOR>_SYSTEM_ID or _PASSWORD (not the shared TOCSIN_SMPP_SYSTEM_ID).
_ACCOUNT_VARIABLE = re.compile(
    r"TOCSIN_SMPP_(?P<operator>[A-Z0-9_]+)_(?P<field>SYSTEM_ID|PASSWORD)"
)


#: How an SMSC may write message ids (gateways.smpp.IdFormat's values): a bind of the operators
#: file says so with `submit_id_format` / `receipt_id_format` (docs/sms.md, "Receipt ids").
ID_FORMATS = ("text", "decimal", "hex")


def _id_format(bind: Mapping[str, Any], key: str, where: str) -> str:
    """A bind's id format as written, or a ValueError naming the field."""
    value = str(bind.get(key, "text"))
    if value not in ID_FORMATS:
        raise ValueError(f"{where}.{key}: {value!r} is not one of {', '.join(ID_FORMATS)}")
    return value


def env_name(operator: str) -> str:
    """An operator's name as it appears in environment variables (as the chart writes it)."""
    return re.sub(r"[^A-Z0-9]", "_", operator.upper())


# -- SMPP accounts (ops, issue 18): no silent default account for a real SMSC ------------------
#: The account the SMSC simulators accept (simulators/smsc/config.py), for loopback binds only.
SIMULATOR_ACCOUNT = ("tocsin", "secret")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _account_or_fail(operator: str, host: str, system_id: str, password: str) -> tuple[str, str]:
    """The bind's account; the simulators' for loopback; else a ValueError saying what to set."""
    if system_id and password:
        return system_id, password
    if host in LOOPBACK_HOSTS:
        return system_id or SIMULATOR_ACCOUNT[0], password or SIMULATOR_ACCOUNT[1]
    missing = "system_id" if not system_id else "password"
    raise ValueError(
        f"operator {operator!r} has no SMPP {missing}: set TOCSIN_SMPP_{env_name(operator)}_"
        f"{missing.upper()} or TOCSIN_SMPP_{missing.upper()}"
    )


# -- end SMPP accounts ------------------------------------------------------------------------


def _parse_routes(text: str) -> dict[str, tuple[str, ...]]:
    routes: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, prefixes = part.partition("=")
        items = tuple(p.strip().removeprefix("+") for p in prefixes.split(",") if p.strip())
        if not sep or not name.strip() or not all(p.isdigit() for p in items):
            raise ValueError(f"TOCSIN_ROUTES: route {part!r} is not `operator=digits,digits`")
        routes[name.strip()] = items
    return routes


class Settings(ChannelSettings):
    """Settings of the SMS service (env prefix TOCSIN_); the worker's own in ChannelSettings."""

    default_grpc_port: ClassVar[int] = 50053
    default_metrics_port: ClassVar[int] = 9103

    # Operators' SMSCs: `proximus=127.0.0.1:2775,orange=127.0.0.1:2776`; the first is the default
    # route. Operators are named as in the operators file (docs/operators.md).
    smsc: str = "proximus=127.0.0.1:2775"
    # TOML file describing operators in full ([operators.<name>] binds=[{host,port,...}],
    # prefixes=[...]); when set it replaces `smsc` and `routes`.
    operators_file: Path | None = None
    # Number prefixes per operator, `proximus=3247,3246;orange=3249`; unmatched numbers go to the
    # default. The default splits Belgian mobile ranges over proximus/orange/base, as
    # stack/operators.toml does (ignoring those not configured).
    routes: str = DEFAULT_ROUTES
    # Operator for numbers no prefix matches (foreign numbers); empty: the first operator.
    default_operator: str = ""
    # SMPP account and password of every bind, unless its operator has its own: an operator's
    # account comes from TOCSIN_SMPP_<OPERATOR>_SYSTEM_ID / _PASSWORD (the name upper-cased, any
    # other character than A-Z and 0-9 as `_`: what the chart's credentials Secret holds), and a
    # bind of the operators file may name its own `system_id` / `password` above both.
    # Without any of these a bind to a real SMSC refuses to start (`operators()` says which);
    # only binds to loopback (the SMSC simulators of `make run`) use the simulators' account.
    smpp_system_id: str = ""
    smpp_password: str = ""
    # Binds opened per operator named in `smsc`, and the window of each.
    binds_per_operator: int = Field(default=2, ge=1, le=64)
    window: int = Field(default=100, ge=1, le=10_000)
    # First pause of an operator after a throttling answer (seconds); doubled up to the cap.
    throttle_min_s: float = Field(default=0.05, gt=0)
    throttle_max_s: float = Field(default=5.0, gt=0)
    # Processes sharing the consumer group, each with its own binds: this one plus workers - 1
    # children (gRPC on a free port, metrics on metrics_port + i).
    workers: int = Field(default=1, ge=1, le=64)
    # Seconds an SMPP session's lease (an operator's `max_sessions` slot) lives in Redis unless
    # renewed; renewed every third of it while the session is up, so a killed process's slots
    # come back within this long.
    smpp_session_lease_s: float = Field(default=keys.SESSION_LEASE_S, gt=0, le=3600)
    # Tokens asked per rate-limit lease.
    lease_size: int = Field(default=200, ge=1)
    # Rate-limit rules file for the ratelimit package; empty: its built-in rules.
    ratelimit_rules: Path | None = None
    # Seconds a GetAlertProgress count is shared by callers polling the same alert (it scans the
    # alert's rows: with many pollers of a million-recipient alert that matters).
    progress_cache_s: float = Field(default=1.0, ge=0)
    # Platform teams allowed on the SMS API, by certificate name: JSON
    # {"api-police": {"senders": ["POLICE"], "daily_quota": 10000}} (services/sms/clients.py).
    api_clients: str = "{}"
    # Seconds between two looks at whether Redis lost its data (the SMS service's marker key,
    # one EXISTS): then the stream entries of API batches still queued are written again from
    # PostgreSQL (services/sms/repair.py). The first look is at start-up.
    api_repair_interval_s: float = Field(default=2.0, gt=0)

    #: Operator environment name -> {"system_id"|"password": value}, read with the settings.
    _accounts: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Read the per-operator SMPP accounts from the environment, once, with the rest."""
        super().model_post_init(context)
        accounts: dict[str, dict[str, str]] = {}
        for key, value in os.environ.items():
            match = _ACCOUNT_VARIABLE.fullmatch(key)
            if match:
                accounts.setdefault(match["operator"], {})[match["field"].lower()] = value
        self._accounts = accounts

    def account(self, operator: str) -> tuple[str, str]:
        """The SMPP system_id and password of `operator`'s binds (its own, else the shared ones)."""
        own = self._accounts.get(env_name(operator), {})
        return own.get("system_id", self.smpp_system_id), own.get("password", self.smpp_password)

    @field_validator("api_clients")
    @classmethod
    def _check_clients(cls, value: str) -> str:
        parse_clients(value)
        return value

    def clients(self) -> dict[str, Client]:
        """The SMS API's platform teams (`api_clients`)."""
        return parse_clients(self.api_clients)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        self.operators()
        return self

    def operators(self) -> list[OperatorSpec]:
        """Operators in routing order (the default one first); ValueError names the problem."""
        ops = self._from_file() if self.operators_file else self._from_env()
        if not ops:
            raise ValueError("no operator configured")
        default = self.default_operator or ops[0].name
        names = [op.name for op in ops]
        if default not in names:
            raise ValueError(f"TOCSIN_DEFAULT_OPERATOR {default!r} is not one of {names}")
        return sorted(ops, key=lambda op: op.name != default)

    def _from_env(self) -> list[OperatorSpec]:
        routes = _parse_routes(self.routes)
        ops: list[OperatorSpec] = []
        for part in filter(None, (p.strip() for p in self.smsc.split(","))):
            name, sep, address = part.partition("=")
            host, colon, port = address.rpartition(":")
            if not sep or not colon or not port.isdigit():
                raise ValueError(f"smsc {part!r} is not `operator=host:port`")
            system_id, password = _account_or_fail(name, host, *self.account(name))
            binds = tuple(
                BindSpec(f"{name}-{i}", host, int(port), system_id, password, self.window)
                for i in range(self.binds_per_operator)
            )
            ops.append(OperatorSpec(name, binds, routes.get(name, ())))
        unknown = set(routes) - {op.name for op in ops}
        if unknown and self.routes != DEFAULT_ROUTES:  # the default names three operators
            raise ValueError(f"TOCSIN_ROUTES name operators without an SMSC: {sorted(unknown)}")
        return ops

    def _from_file(self) -> list[OperatorSpec]:
        assert self.operators_file is not None
        ops: list[OperatorSpec] = []
        for op in load_operators(self.operators_file):
            system_id, password = self.account(op.name)
            binds = tuple(
                BindSpec(
                    str(b.extra.get("name", f"{op.name}-{i}")),
                    b.host,
                    b.port,
                    *_account_or_fail(
                        op.name,
                        b.host,
                        str(b.extra.get("system_id", system_id)),
                        str(b.extra.get("password", password)),
                    ),
                    int(b.extra.get("window", self.window)),
                    _id_format(b.extra, "submit_id_format", f"operators.{op.name}.binds[{i}]"),
                    _id_format(b.extra, "receipt_id_format", f"operators.{op.name}.binds[{i}]"),
                )
                for i, b in enumerate(op.binds)
            )
            if not binds:
                raise ValueError(f"operator {op.name!r} has no binds")
            ops.append(OperatorSpec(op.name, binds, op.prefixes, op.max_sessions))
        return ops

"""What `make run` starts: the services and simulators, their ports and their wiring.

Two tables to append to: SERVICES (a service process each, in start order) and the simulators
(PER_OPERATOR: one per operator of the operators file; SIMULATORS: one each).
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.kernel.operators import Operator, load_operators


@dataclass(frozen=True)
class ServiceSpec:
    """One service process of the stack."""

    name: str
    grpc_port: int
    metrics_port: int
    #: Extra environment, with {placeholders} filled from the stack's addresses.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        """The module run with `python -m`."""
        return f"services.{self.name}"

    def exists(self) -> bool:
        """Whether this service has been built yet (its __main__ module exists)."""
        return module_exists(f"{self.module}.__main__")


def module_exists(name: str) -> bool:
    """Whether `name` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@dataclass(frozen=True)
class SimulatorSpec:
    """One simulator process standing in for a peer outside the platform (an operator's SMSC)."""

    name: str
    #: The module run with `python -m`; it is given `--port <port>` and then `args`.
    module: str
    port: int
    args: tuple[str, ...] = ()

    def exists(self) -> bool:
        """Whether this simulator has been built yet."""
        return module_exists(f"{self.module}.__main__")


#: The operators of `make run` (the one list; docs/operators.md).
OPERATORS_FILE = Path(__file__).resolve().parent / "operators.toml"


def operators(*, offset: int = 0) -> tuple[Operator, ...]:
    """The operators of `make run`, from OPERATORS_FILE, every bind's port moved by `offset`."""
    return tuple(
        replace(op, binds=tuple(replace(b, port=b.port + offset) for b in op.binds))
        for op in load_operators(OPERATORS_FILE)
    )


def simulators(ops: tuple[Operator, ...], *, offset: int = 0) -> list[SimulatorSpec]:
    """The simulators in start order: each operator's (PER_OPERATOR), then the shared ones (their
    ports moved by `offset`, as the operators' are)."""
    per_operator = [make(op) for op in ops for make in PER_OPERATOR]
    return [*per_operator, *(replace(s, port=s.port + offset) for s in SIMULATORS)]


def _smsc(op: Operator) -> SimulatorSpec:
    """The operator's SMSC, on its first bind's port."""
    return SimulatorSpec(
        f"smsc-{op.name}", "simulators.smsc", op.binds[0].port, ("--name", op.name)
    )


#: Simulators started once per operator of the operators file (append a channel's peer here).
PER_OPERATOR: tuple[Callable[[Operator], SimulatorSpec], ...] = (_smsc,)

#: Simulators started once, after the per-operator ones (append shared peers here).
SIMULATORS: tuple[SimulatorSpec, ...] = (
    # The SIP trunk the voice service calls through (TOCSIN_TRUNKS below): most calls answered
    # after a ring, some busy or unanswered, as citizens are.
    SimulatorSpec(
        "siptrunk",
        "simulators.siptrunk",
        5060,
        (
            "--answer-share",
            "0.8",
            "--busy-share",
            "0.1",
            "--no-answer-share",
            "0.1",
            "--ring-delay",
            "1.5",
        ),
    ),
)

#: Services in start order: targeting before alerting, which calls it.
SERVICES = (
    ServiceSpec("targeting", 50052, 9102),
    ServiceSpec(
        "sms",
        50053,
        9103,
        # The load test's platform team on the SMS API (its certificate: stack/pki.py).
        env={
            "TOCSIN_API_CLIENTS": (
                '{"api-loadtest": {"senders": ["TOCSIN"], "daily_quota": 100000000}}'
            )
        },
    ),
    ServiceSpec(
        "voice",
        50054,
        9104,
        # The SIP trunk simulator (SIMULATORS), shifted with the stack.
        env={"TOCSIN_TRUNKS": "trunkA=127.0.0.1:5060"},
    ),
    ServiceSpec("cellbroadcast", 50055, 9105),
    ServiceSpec(
        "alerting",
        50051,
        9101,
        env={
            "TOCSIN_TARGETING_ADDR": "127.0.0.1:50052",
            "TOCSIN_SMS_ADDR": "127.0.0.1:50053",
            # A fresh token-signing key per `make run`: tokens end with the stack that issued them.
            "TOCSIN_JWT_KEY": secrets.token_urlsafe(48),
        },
    ),
)

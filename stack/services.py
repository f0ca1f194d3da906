"""What `make run` starts: the services and simulators, their ports and their wiring.

Two tables to append to: SERVICES (a service process each, in start order) and the simulators
(PER_OPERATOR: one per operator of the operators file; SIMULATORS: one each).
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
        replace(
            op,
            binds=tuple(replace(b, port=b.port + offset) for b in op.binds),
            sections={k: _moved(v, offset) for k, v in op.sections.items()},
        )
        for op in load_operators(OPERATORS_FILE)
    )


def _moved(section: Mapping[str, Any], offset: int) -> Mapping[str, Any]:
    """A channel section whose `url` (http://host:port) has its port moved by `offset`."""
    url = section.get("url")
    if not isinstance(url, str) or not offset:
        return section
    parts = urlsplit(url)
    if parts.port is None:
        return section
    moved = parts._replace(netloc=f"{parts.hostname}:{parts.port + offset}")
    return {**section, "url": urlunsplit(moved)}


def simulators(ops: tuple[Operator, ...], *, offset: int = 0) -> list[SimulatorSpec]:
    """The simulators in start order: each operator's (PER_OPERATOR), then the shared ones.

    The operators' ports come moved already; the shared ones are moved by `offset` here.
    """
    per_operator = [make(op) for op in ops for make in PER_OPERATOR]
    return [
        *(s for s in per_operator if s is not None),
        *(replace(s, port=s.port + offset) for s in SIMULATORS),
    ]


def _smsc(op: Operator) -> SimulatorSpec:
    """The operator's SMSC, on its first bind's port."""
    return SimulatorSpec(
        f"smsc-{op.name}", "simulators.smsc", op.binds[0].port, ("--name", op.name)
    )


def _cbc(op: Operator) -> SimulatorSpec | None:
    """The operator's CBC and LB-SMS platform, on the port of its `cbc` url."""
    url = op.sections.get("cbc", {}).get("url")
    port = urlsplit(url).port if isinstance(url, str) else None
    if port is None:
        return None
    zone = op.sections.get("lbsms", {}).get("zone")
    # Its LB-SMS platform takes the zone as the operator's setting says, and nothing else.
    taken = ("--lbsms-zone", zone) if isinstance(zone, str) else ()
    return SimulatorSpec(f"cbc-{op.name}", "simulators.cbc", port, ("--name", op.name, *taken))


#: Simulators started once per operator of the operators file (append a channel's peer here).
PER_OPERATOR: tuple[Callable[[Operator], SimulatorSpec | None], ...] = (_smsc, _cbc)

#: Port of the contact-centre simulator (the information line's provider, docs/infoline.md).
CONTACT_CENTRE_PORT = 8780

#: Simulators started once, after the per-operator ones (append shared peers here).
SIMULATORS: tuple[SimulatorSpec, ...] = (
    # Opens lines 3 s after their activation, for the demo to show.
    SimulatorSpec(
        "contactcentre", "simulators.contactcentre", CONTACT_CENTRE_PORT, ("--open-after-s", "3")
    ),
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

#: The SMTP relay simulator standing in for the deployment's relay, the e-mail service's bounce
#: receiver, and the public CAP feed (HTTP), before `make run`'s port offset.
RELAY_PORT, BOUNCE_PORT, CAPFEED_PORT = 2525, 2526, 8090

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
        env={
            "TOCSIN_TRUNKS": "trunkA=127.0.0.1:5060",
            # The demo's calls end within its two minutes: a short ring, a quick retry.
            "TOCSIN_RING_TIMEOUT_S": "5",
            "TOCSIN_RETRY_MIN_S": "2",
            "TOCSIN_RETRY_MAX_S": "4",
        },
    ),
    ServiceSpec("cellbroadcast", 50055, 9105),
    # E-mail to the SMTP relay simulator (RELAY_PORT); bounces come back on BOUNCE_PORT.
    ServiceSpec("email", 50056, 9106),
    ServiceSpec(
        "alerting",
        50051,
        9101,
        env={
            "TOCSIN_TARGETING_ADDR": "127.0.0.1:50052",
            "TOCSIN_SMS_ADDR": "127.0.0.1:50053",
            "TOCSIN_CELLBROADCAST_ADDR": "127.0.0.1:50055",
            # The contact-centre simulator (information line), followed every second.
            "TOCSIN_INFOLINE_PROVIDER_URL": f"http://127.0.0.1:{CONTACT_CENTRE_PORT}",
            "TOCSIN_INFOLINE_SYNC_S": "1.0",
            # A fresh token-signing key per `make run`: tokens end with the stack that issued them.
            "TOCSIN_JWT_KEY": secrets.token_urlsafe(48),
            # What this stack delivers: voice, e-mail and the CAP feed run in it; cell broadcast and
            # LB-SMS go to the CBC simulators of PER_OPERATOR.
            "TOCSIN_ENABLED_CHANNELS": "sms,voice,email,cap_feed,cell_broadcast,lb_sms",
        },
    ),
)

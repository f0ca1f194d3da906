"""What `make run` starts: the services and simulators, their ports and their wiring."""

from __future__ import annotations

import importlib.util
import secrets
from dataclasses import dataclass, field


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
class SmscSpec:
    """One SMSC simulator standing in for a mobile operator."""

    operator: str
    port: int


#: Operators played by SMSC simulators in `make run`, named as in the rate limiter's default
#: rules (ratelimit/config.py shares the national rate 45/30/25 between them).
SMSCS = (SmscSpec("proximus", 2775), SmscSpec("orange", 2776), SmscSpec("base", 2777))

#: Belgian mobile ranges (after +32) of each simulated operator, for the SMS service's routing.
ROUTES = "proximus=3247,3246;orange=3249;base=3248,32456"

#: Services in start order: targeting before alerting, which calls it.
SERVICES = (
    ServiceSpec("targeting", 50052, 9102),
    ServiceSpec("sms", 50053, 9103),
    ServiceSpec(
        "voice",
        50054,
        9104,
        # The SIP trunk simulator started beside it (SIPTRUNK_PORT), shifted with the stack.
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

#: The SIP trunk simulator of `make run` (simulators/siptrunk): most calls answered after a ring,
#: some busy or unanswered, as citizens are.
SIPTRUNK_PORT = 5060
SIPTRUNK_ARGS = (
    "--answer-share",
    "0.8",
    "--busy-share",
    "0.1",
    "--no-answer-share",
    "0.1",
    "--ring-delay",
    "1.5",
)

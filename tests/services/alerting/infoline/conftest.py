"""The information line served in-process next to the alerting harness, on a real simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from tocsin.alerting.v1 import alerting_pb2 as apb
from tocsin.alerting.v1 import alerting_pb2_grpc, infoline_pb2_grpc
from tocsin.alerting.v1 import infoline_pb2 as pb

from services.alerting.auth import LoginGuard
from services.alerting.gate import Gate
from services.alerting.infoline.costs import Tariff
from services.alerting.infoline.lines import InfoLines
from services.alerting.infoline.provider import HttpContactCentre
from services.alerting.infoline.servicer import add_servicer
from services.alerting.infoline.sync import Syncer
from services.alerting.servicer import AuthServicer
from services.kernel.interceptors import ErrorInterceptor
from simulators.contactcentre.config import ContactCentreConfig
from simulators.contactcentre.server import ContactCentreSimulator
from tests.services.alerting.conftest import AUDIT_KEY, ISSUER, JWT_KEY, Client, Harness, spec

#: The provider's tariff in these tests, EUR excl. VAT.
TARIFF = Tariff(staff_hour=Decimal("38.50"), telephony_minute=Decimal("0.04"))


@dataclass
class FakeClock:
    """The platform's clock, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move forward by timedelta(**delta)."""
        self.now += timedelta(**delta)


def ts(moment: datetime) -> Timestamp:
    """A protobuf Timestamp."""
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def form(
    *,
    alert_ids: tuple[str, ...] = (),
    kind: pb.LineKind = pb.LINE_KIND_D5,
    exercise: bool = False,
    advice: dict[str, str] | None = None,
    desired_opening: datetime | None = None,
    operators: int = 0,
) -> pb.ActivationForm:
    """An activation form with sensible defaults."""
    return pb.ActivationForm(
        kind=kind,
        exercise=exercise,
        description="Chemical cloud over Gent-Rabot after a fire at a plant.",
        advice=advice
        if advice is not None
        else {"nl": "Blijf binnen, sluit ramen en deuren.", "fr": "Restez à l'intérieur."},
        liaison=pb.Contact(name="Liaison Gent", phone="+3292680000", email="liaison@gent.be"),
        operators=operators,
        desired_opening=None if desired_opening is None else ts(desired_opening),
        alert_ids=list(alert_ids),
    )


@dataclass
class LineEnv:
    """InfoLineService on its own port (same database and token key as the harness)."""

    harness: Harness
    sim: ContactCentreSimulator
    clock: FakeClock
    lines: InfoLines
    syncer: Syncer
    stub: infoline_pb2_grpc.InfoLineServiceAsyncStub
    http: aiohttp.ClientSession
    #: gRPC address of InfoLineService.
    target: str

    @property
    def admin(self) -> tuple[tuple[str, str]]:
        """The admin's call metadata."""
        return self.harness.admin.metadata

    async def entity(self, name: str = "Gent", **kwargs: Any) -> int:
        """A new entity's id."""
        return int((await self.harness.entity(name, **kwargs)).id)

    async def person(
        self, entity_id: int, username: str, function: pb.PersonFunction = pb.PERSON_FUNCTION_MAYOR
    ) -> Client:
        """An issuer of the entity named an authorised person, logged in."""
        client = await self.harness.issuer(entity_id, username)
        users = await self.harness.admin.admin.ListUsers(
            apb.ListUsersRequest(entity_id=entity_id), metadata=self.admin
        )
        user_id = next(u.id for u in users.users if u.username == username)
        await self.stub.AddAuthorisedPerson(
            pb.AddAuthorisedPersonRequest(entity_id=entity_id, user_id=user_id, function=function),
            metadata=self.admin,
        )
        return client

    async def alert(self, client: Client) -> str:
        """An emergency alert (draft) of the client's entity."""
        alert = await client.alerts.CreateAlert(
            apb.CreateAlertRequest(idempotency_key=f"line-{uuid.uuid4()}", spec=spec()),
            metadata=client.metadata,
        )
        return str(alert.id)

    async def declare(self, client: Client, entity_id: int) -> None:
        """The entity's mayor declares the municipal phase."""
        await self.stub.DeclarePhase(
            pb.DeclarePhaseRequest(
                entity_id=entity_id, level=pb.PHASE_LEVEL_MUNICIPAL, reason="fire at a plant"
            ),
            metadata=client.metadata,
        )

    async def ready(self, name: str = "Gent") -> tuple[int, Client, str]:
        """An entity with its mayor, a declared phase and one alert: ready to activate."""
        entity_id = await self.entity(name)
        mayor = await self.person(entity_id, f"mayor-{name.lower()}")
        await self.declare(mayor, entity_id)
        return entity_id, mayor, await self.alert(mayor)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the simulator's control API over its socket."""
        url = f"http://127.0.0.1:{self.sim.port}{path}"
        method = "POST" if body is not None else "GET"
        async with self.http.request(method, url, json=body) as response:
            response.raise_for_status()
            return await response.json()


MakeEnv = Callable[..., Awaitable[LineEnv]]


@pytest.fixture
async def line_env_factory(harness: Harness) -> AsyncIterator[MakeEnv]:
    """Build the information line on a simulator configured by keyword (ContactCentreConfig)."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(**config: Any) -> LineEnv:
        sim = ContactCentreSimulator(replace(ContactCentreConfig(), **config))
        await sim.start()
        cleanups.append(sim.stop)
        provider = HttpContactCentre(base_url=f"http://127.0.0.1:{sim.port}", timeout_s=5)
        cleanups.append(provider.aclose)
        clock = FakeClock()
        lines = InfoLines(pool=harness.pool, provider=provider, clock=clock)
        syncer = Syncer(
            pool=harness.pool,
            provider=provider,
            clock=clock,
            tariff=TARIFF,
            audit_key=AUDIT_KEY,
        )
        server = grpc.aio.server(interceptors=[ErrorInterceptor(service="alerting")])
        gate = Gate(pool=harness.pool, jwt_key=JWT_KEY, token_issuer=ISSUER, audit_key=AUDIT_KEY)
        cleanups.append(gate.drain)  # after the server stopped (cleanups run in reverse)
        add_servicer(server, pool=harness.pool, gate=gate, lines=lines)
        # Login too, for the command line, which logs in where it calls.
        guard = LoginGuard(redis=harness.redis, max_failures=10, window_s=60)
        alerting_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(pool=harness.pool, gate=gate, guard=guard, token_ttl_s=600), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        cleanups.append(lambda: server.stop(None))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        cleanups.append(channel.close)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        cleanups.append(http.close)
        stub = infoline_pb2_grpc.InfoLineServiceStub(channel)
        return LineEnv(harness, sim, clock, lines, syncer, stub, http, f"127.0.0.1:{port}")

    try:
        yield make
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


@pytest.fixture
async def line_env(line_env_factory: MakeEnv) -> LineEnv:
    """The information line on a simulator that acknowledges at once and opens in 10 minutes."""
    return await line_env_factory()

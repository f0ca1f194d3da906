"""Alerting and targeting beside the fault bench's SMS process, and alerts sent through them.

The fault bench (bench/faults.py) writes its campaign straight onto the SMS stream; the faults
that need an alert (kill -9 of alerting or targeting, an emergency mid-campaign) get these two
processes too, plaintext (TOCSIN_INSECURE_DEV, as the bench's SMS process), one entity whose
territory is the whole country, an issuer, and per fault its own subscribers registered through
targeting's API at home in a city of their own, with numbers of their own: nobody is reached
by two of them, so a repeat arrival at a simulator is a duplicate, whichever alert it was.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import shapely.geometry
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc
from tocsin.targeting.v1 import targeting_pb2

from bench.load import load_population
from bench.population import OUTLINE
from loadtest.campaign import find_zone
from services.kernel.tls import ClientSettings, connect
from stack import seed
from stack.embedded import free_port
from stack.supervisor import Supervisor

#: In start order: alerting asks targeting to resolve.
SERVICES = ("targeting", "alerting")
#: Cities far enough apart that zones of a few kilometres around them never meet: one per fault.
PLACES = (
    seed.Place("Gent", 3.7174, 51.0543, 1000.0),
    seed.Place("Antwerpen", 4.4025, 51.2194, 1000.0),
    seed.Place("Liege", 5.5797, 50.6326, 1000.0),
    seed.Place("Namur", 4.8718, 50.4674, 1000.0),
    seed.Place("Brugge", 3.2247, 51.2093, 1000.0),
    seed.Place("Hasselt", 5.3378, 50.9307, 1000.0),
)
#: Radius of a fault's zone when a synthetic population is loaded: its subscribers are put where
#: nobody of the population lives (see `_empty_places`).
EMPTY_RADIUS_M = 300.0
#: Texts of one GSM segment in every language, test marking included (the campaign's alert).
SHORT_TEXTS = {lang: ("Test", "Test", "Test.", "-") for lang in ("nl", "fr", "de", "en")}
#: How long the campaign's alert lives: longer than any run.
CAMPAIGN_EXPIRES = timedelta(hours=6)
#: Alert states after which nothing more is sent.
FINAL = (
    alerting_pb2.ALERT_STATE_COMPLETE,
    alerting_pb2.ALERT_STATE_CANCELLED,
    alerting_pb2.ALERT_STATE_EXPIRED,
)


@dataclass(frozen=True)
class Audience:
    """Subscribers registered for one fault's alert: at home in `place`, numbered by `number`."""

    place: seed.Place
    count: int
    number: Callable[[int], str]
    #: The i-th one's e-mail address, for a fault whose alert goes by e-mail (None: SMS only).
    email: Callable[[int], str] | None = None
    #: The channel they registered for (targeting's Channel), by phone unless `email` is given.
    channel: int = targeting_pb2.CHANNEL_SMS


@dataclass
class AlertServices:
    """The alerting and targeting processes of a fault run, and an issuer of alerts."""

    supervisor: Supervisor
    #: Environment shared by both (stores, plaintext, the SMS process's address).
    env: Mapping[str, str]
    ports: dict[str, int] = field(default_factory=lambda: {n: free_port() for n in SERVICES})
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    issuer: seed.Metadata = ()
    entity_id: int = 0
    audiences: dict[str, Audience] = field(default_factory=dict)
    #: Channels alerting delivers (TOCSIN_ENABLED_CHANNELS): `sms,email...` as faults need.
    channels: str = "sms"
    #: Environment of a channel process started beside them (`email`: its relay), by name.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    _jwt_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def address(self, name: str) -> str:
        """The gRPC address of `name` (the same across restarts)."""
        self.ports.setdefault(name, free_port())
        return f"127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        """Start `name` and wait until it is SERVING (blocking: run it in a thread)."""
        env = dict(self.env)
        address = self.address(name)
        env.update(
            TOCSIN_GRPC_PORT=str(self.ports[name]),
            TOCSIN_METRICS_PORT="0",
            TOCSIN_INSECURE_DEV="1",
            TOCSIN_JWT_KEY=self._jwt_key,
            TOCSIN_TARGETING_ADDR=self.address("targeting"),
            TOCSIN_ENABLED_CHANNELS=self.channels,
            # Settle and resume often: a fault's figures wait for the alert's completion.
            TOCSIN_SETTLE_INTERVAL_S="0.5",
        )
        env.update(self.extra_env.get(name, {}))
        self.procs[name] = self.supervisor.spawn(name, ["-m", f"services.{name}"], env=env)
        # The supervisor refuses to wait while any child it started has exited: the processes
        # earlier faults killed or stopped on purpose (a new one runs in their place).
        self.supervisor.children = [c for c in self.supervisor.children if c.popen.poll() is None]
        self.supervisor.wait_serving(name, address)

    async def kill9(self, name: str) -> float:
        """SIGKILL `name`, start it again; the seconds until it is SERVING again."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        started = time.monotonic()
        await asyncio.to_thread(self.start, name)
        return time.monotonic() - started

    def channel(self, name: str = "alerting") -> grpc.aio.Channel:
        """A plaintext client channel to `name`."""
        return connect(self.address(name), service=name, settings=ClientSettings(insecure_dev=True))

    async def seed(
        self, *, database_url: str, audiences: Mapping[str, Audience], population: int = 0
    ) -> None:
        """An admin, an entity governing the whole country, its issuer; a synthetic population
        of `population` subscribers (targeting's bulk loader, bench/load.py) if asked; each
        fault's subscribers (through targeting's API), where nobody of the population lives."""
        if population:
            conn = await asyncpg.connect(database_url)
            try:
                await load_population(conn=conn, seed=2022, subscribers=population)
            finally:
                await conn.close()
        password = seed.new_password()
        await seed.bootstrap_admin(
            database_url=database_url, username="faults-admin", password=password
        )
        async with self.channel() as alerting, self.channel("targeting") as targeting:
            admin = seed.bearer(
                await seed.login(alerting, username="faults-admin", password=password)
            )
            self.entity_id = await seed.ensure_entity(
                alerting,
                admin,
                place=PLACES[0],
                name="Federal crisis centre (fault bench)",
                territory_kind="country",
                territory=json.dumps(shapely.geometry.mapping(OUTLINE)),
            )
            await seed.ensure_issuer(
                alerting,
                admin,
                entity_id=self.entity_id,
                username="faults-issuer",
                password=password,
            )
            self.issuer = seed.bearer(
                await seed.login(alerting, username="faults-issuer", password=password)
            )
            empty = _empty_places(targeting, self.entity_id) if population else None
            for name, audience in audiences.items():
                if empty is not None:
                    audience = replace(audience, place=await anext(empty))
                await seed.register_subscribers(
                    targeting,
                    place=audience.place,
                    count=audience.count,
                    number=audience.number,
                    concurrency=8,
                    # E-mail only for a fault whose alert goes by e-mail.
                    email=audience.email,
                    channels=(audience.channel,),
                )
                self.audiences[name] = audience

    async def campaign(self, *, recipients: int) -> tuple[str, int]:
        """A test SMS alert (bulk lane, texts of one segment) to the circle around Brussels
        whose audience is nearest `recipients` (loadtest/campaign.py's `find_zone`): its id
        and that audience."""
        async with self.channel("targeting") as targeting:
            place, count = await find_zone(
                targeting, entity_id=self.entity_id, recipients=recipients
            )
        spec = seed.alert_spec(
            place=place,
            kind=alerting_pb2.ALERT_KIND_TEST,
            texts=SHORT_TEXTS,
            expires_in=CAMPAIGN_EXPIRES,
        )
        async with self.channel() as alerting:
            alert = await seed.create_alert(
                alerting, self.issuer, spec=spec, key=f"faults-campaign-{secrets.token_hex(4)}"
            )
        return str(alert.id), count

    async def create(self, fault: str, channel: int = alerting_pb2.CHANNEL_SMS) -> str:
        """An emergency alert (one SMS segment per language) to `fault`'s audience on `channel`:
        its id."""
        audience = self.audiences[fault]
        spec = seed.alert_spec(place=audience.place, kind=alerting_pb2.ALERT_KIND_EMERGENCY)
        del spec.channels[:]
        spec.channels.append(channel)  # type: ignore[arg-type]
        async with self.channel() as alerting:
            alert = await seed.create_alert(
                alerting, self.issuer, spec=spec, key=f"faults-{fault}-{secrets.token_hex(4)}"
            )
        return str(alert.id)

    async def send(self, alert_id: str) -> None:
        """SendAlert (raises grpc.aio.AioRpcError as it fails)."""
        async with self.channel() as alerting:
            await alerting_pb2_grpc.AlertingServiceStub(alerting).SendAlert(
                alerting_pb2.SendAlertRequest(alert_id=alert_id),
                metadata=self.issuer,
                timeout=seed.CALL_TIMEOUT_S,
            )

    async def cancel(self, alert_id: str) -> alerting_pb2.Alert:
        """CancelAlert (alerting withdraws the alert's broadcasts before it answers)."""
        async with self.channel() as alerting:
            return await alerting_pb2_grpc.AlertingServiceStub(alerting).CancelAlert(
                alerting_pb2.CancelAlertRequest(alert_id=alert_id),
                metadata=self.issuer,
                timeout=seed.CALL_TIMEOUT_S,
            )

    async def get(self, alert_id: str) -> alerting_pb2.Alert:
        """GetAlert."""
        async with self.channel() as alerting:
            return await alerting_pb2_grpc.AlertingServiceStub(alerting).GetAlert(
                alerting_pb2.GetAlertRequest(alert_id=alert_id),
                metadata=self.issuer,
                timeout=seed.CALL_TIMEOUT_S,
            )

    async def until_final(self, alert_id: str, *, timeout_s: float) -> alerting_pb2.Alert | None:
        """GetAlert every quarter second until the alert is complete (or cancelled, expired);
        None if it is not within `timeout_s` or alerting does not answer meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                alert = await self.get(alert_id)
            except grpc.aio.AioRpcError:
                alert = None
            if alert is not None and alert.state in FINAL:
                return alert
            await asyncio.sleep(0.25)
        return None


async def _empty_places(targeting: grpc.aio.Channel, entity_id: int) -> AsyncIterator[seed.Place]:
    """Circles of EMPTY_RADIUS_M in the countryside where targeting finds nobody, west to east:
    a fault's own subscribers go there, so that its alert reaches them only."""
    lon_min, lat_min, lon_max, lat_max = OUTLINE.bounds
    steps = 24
    for i in range(steps):
        for j in range(steps):
            lon = lon_min + (lon_max - lon_min) * (i + 0.5) / steps
            lat = lat_min + (lat_max - lat_min) * (j + 0.5) / steps
            if not OUTLINE.contains(shapely.geometry.Point(lon, lat).buffer(0.02)):
                continue
            # Nobody in three times the radius: targeting's count may miss an address near the
            # edge of a small circle that its resolution then finds.
            wide = seed.Place(f"empty-{i}-{j}", lon, lat, 3 * EMPTY_RADIUS_M)
            if await seed.audience(targeting, entity_id=entity_id, place=wide) == 0:
                yield replace(wide, radius_m=EMPTY_RADIUS_M)


#: Cell sites each operator gets over a cell broadcast fault's zone, and their radius.
CELLS_PER_OPERATOR = 3
CELL_RADIUS_M = 500.0


async def seed_cells(
    database_url: str, *, place: seed.Place, operators: list[str], fault: str
) -> dict[str, list[str]]:
    """CELLS_PER_OPERATOR cell sites of every operator around the place's centre (targeting
    finds the cells in an alert's zone in `cell_sites`; cell broadcast needs them): their ids,
    per operator."""
    cells = {op: [f"{op}-{fault}-{i}" for i in range(CELLS_PER_OPERATOR)] for op in operators}
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO cell_sites (operator, cell_id, lon, lat, radius_m)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [
                # A few tens of metres apart, well inside the zone.
                (op, cell, place.lon + 0.0003 * i, place.lat, CELL_RADIUS_M)
                for op, ids in cells.items()
                for i, cell in enumerate(ids)
            ],
        )
    finally:
        await conn.close()
    return cells


#: The channels' tables of delivery records `outcomes` reads.
TABLES = ("sms_messages", "email_messages", "voice_messages")


async def outcomes(
    pool: asyncpg.Pool, alert_id: str, table: str = "sms_messages"
) -> dict[str, int]:
    """The alert's recipients per state in a channel's `table` (one of TABLES), from PostgreSQL
    (the channel process's records)."""
    if table not in TABLES:
        raise ValueError(f"table: not one of {TABLES}: {table!r}")
    rows = await pool.fetch(
        f"SELECT state, count(*) AS n FROM {table} WHERE alert = $1 GROUP BY state", alert_id
    )
    return {str(r["state"]): int(r["n"]) for r in rows}


def state_name(alert: alerting_pb2.Alert | None) -> str:
    """`complete`, `sent`... of an alert; `unknown` when there was no answer."""
    if alert is None:
        return "unknown"
    name: str = alerting_pb2.AlertState.Name(alert.state)
    return name.removeprefix("ALERT_STATE_").lower()


def first_after(arrivals: Mapping[str, list[float]], numbers: list[str], since: float) -> Any:
    """The earliest arrival at a simulator, at or after `since`, of any of `numbers` (None)."""
    # The simulators key arrivals by destination_addr, the number without its '+'.
    times = [t for n in numbers for t in arrivals.get(n.lstrip("+"), ()) if t >= since]
    return min(times) if times else None

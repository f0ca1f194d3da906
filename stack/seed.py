"""Seed a running stack through its own APIs: an admin, an entity, issuers, subscribers, alerts.

Shared by the load test, the campaign benchmark, the metrics-coverage test and the `make run` demo.
Everything goes through the services' gRPC APIs except the very first admin, which by design
is written straight into the database, by the alerting CLI's `bootstrap-admin` (audited).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import secrets
import sys
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc
from tocsin.targeting.v1 import targeting_pb2, targeting_pb2_grpc

Metadata = tuple[tuple[str, str], ...]

#: Number prefixes (after +32) of the two operators the stack simulates (SMS routing defaults).
OPERATOR_PREFIXES = ("47", "49")
#: Seconds a seeding call may take.
CALL_TIMEOUT_S = 30.0


class SeedError(RuntimeError):
    """Seeding could not go on; the message says why."""


@dataclass(frozen=True)
class Place:
    """A circular zone somewhere in Belgium, and the territory of the entity that owns it."""

    name: str
    lon: float
    lat: float
    #: Radius of the alert zone, in metres.
    radius_m: float
    #: Half the side of the square territory around it, in metres.
    territory_half_m: float = 15_000.0

    def _offset(self, dx_m: float, dy_m: float) -> tuple[float, float]:
        lon = self.lon + dx_m / (111_320.0 * math.cos(math.radians(self.lat)))
        lat = self.lat + dy_m / 110_574.0
        return lon, lat

    def territory_geojson(self) -> str:
        """A square around the place, as a GeoJSON Polygon."""
        h = self.territory_half_m
        return _polygon(
            [self._offset(x, y) for x, y in ((-h, -h), (h, -h), (h, h), (-h, h), (-h, -h))]
        )

    def zone_geojson(self, *, sides: int = 48) -> str:
        """The circular zone as a GeoJSON Polygon."""
        ring = [
            self._offset(
                self.radius_m * math.cos(2 * math.pi * i / sides),
                self.radius_m * math.sin(2 * math.pi * i / sides),
            )
            for i in range(sides)
        ]
        return _polygon([*ring, ring[0]])

    def random_point(self, rng: random.Random, *, inside: float = 0.9) -> tuple[float, float]:
        """A point drawn evenly inside `inside` times the zone's radius."""
        r = self.radius_m * inside * math.sqrt(rng.random())
        theta = rng.uniform(0, 2 * math.pi)
        return self._offset(r * math.cos(theta), r * math.sin(theta))


def _polygon(ring: list[tuple[float, float]]) -> str:
    """A closed ring of (lon, lat) as a GeoJSON Polygon."""
    coords = ",".join(f"[{lon:.6f},{lat:.6f}]" for lon, lat in ring)
    return f'{{"type":"Polygon","coordinates":[[{coords}]]}}'


#: Gent, the demo's and the load test's municipality.
GENT = Place("Gent", 3.7174, 51.0543, 1500.0)


def bearer(token: str) -> Metadata:
    """Call metadata carrying a token from AuthService.Login."""
    return (("authorization", f"Bearer {token}"),)


def new_password() -> str:
    """A random password long enough for the alerting service."""
    return secrets.token_urlsafe(18)


def phone(index: int, *, block: int = 0) -> str:
    """A distinct Belgian mobile number per index, alternating between the simulated operators."""
    prefix = OPERATOR_PREFIXES[index % len(OPERATOR_PREFIXES)]
    return f"+32{prefix}{block % 10}{index:06d}"


def landline(index: int) -> str:
    """A distinct Gent landline number (+32 9) per index, for citizens reached by voice."""
    return f"+3292{index:06d}"


async def bootstrap_admin(*, database_url: str, username: str, password: str) -> bool:
    """Create the first admin with the alerting CLI (audited); False when one exists already."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.alerting.cli",
        "bootstrap-admin",
        "--username",
        username,
        env={**os.environ, "DATABASE_URL": database_url, "TOCSIN_NEW_PASSWORD": password},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), CALL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SeedError(f"bootstrap-admin did not finish within {CALL_TIMEOUT_S:.0f} s") from None
    text = output.decode(errors="replace")
    if proc.returncode == 0:
        return True
    if "FAILED_PRECONDITION" in text:
        return False
    raise SeedError(f"bootstrap-admin failed ({proc.returncode}): {text.strip()}")


async def login(channel: grpc.aio.Channel, *, username: str, password: str) -> str:
    """A token for the user."""
    auth = alerting_pb2_grpc.AuthServiceStub(channel)
    reply = await auth.Login(
        alerting_pb2.LoginRequest(username=username, password=password), timeout=CALL_TIMEOUT_S
    )
    return reply.token


async def ensure_entity(
    channel: grpc.aio.Channel,
    admin: Metadata,
    *,
    place: Place,
    name: str = "",
    territory_kind: str = "municipality",
    territory: str = "",
    postpaid: bool = True,
) -> int:
    """The id of the type 1 entity governing `place`, created with its territory if absent."""
    stub = alerting_pb2_grpc.AdminServiceStub(channel)
    name = name or f"Gemeente {place.name} (tocsin demo)"
    found = await stub.ListEntities(
        alerting_pb2.ListEntitiesRequest(), metadata=admin, timeout=CALL_TIMEOUT_S
    )
    for entity in found.entities:
        if entity.name == name:
            return entity.id
    created = await stub.CreateEntity(
        alerting_pb2.CreateEntityRequest(
            name=name,
            type=1,
            territory_kind=territory_kind,
            territory_geojson=territory or place.territory_geojson(),
            postpaid=postpaid,
        ),
        metadata=admin,
        timeout=CALL_TIMEOUT_S,
    )
    return created.id


async def ensure_issuer(
    channel: grpc.aio.Channel, admin: Metadata, *, entity_id: int, username: str, password: str
) -> None:
    """Create an issuer of the entity unless one of that name exists."""
    stub = alerting_pb2_grpc.AdminServiceStub(channel)
    users = await stub.ListUsers(
        alerting_pb2.ListUsersRequest(entity_id=entity_id), metadata=admin, timeout=CALL_TIMEOUT_S
    )
    if any(u.username == username for u in users.users):
        return
    await stub.CreateUser(
        alerting_pb2.CreateUserRequest(
            username=username,
            password=password,
            entity_id=entity_id,
            role=alerting_pb2.ROLE_ISSUER,
        ),
        metadata=admin,
        timeout=CALL_TIMEOUT_S,
    )


async def audience(
    channel: grpc.aio.Channel,
    *,
    entity_id: int,
    place: Place,
    of: int = targeting_pb2.CHANNEL_SMS,
) -> int:
    """Recipients of one channel (SMS unless `of` says) targeting counts in the place's zone."""
    stub = targeting_pb2_grpc.TargetingStub(channel)
    reply = await stub.Preview(
        targeting_pb2.PreviewRequest(
            entity_id=entity_id,
            zone=targeting_pb2.Zone(geojson=place.zone_geojson()),
            channels=[of],  # type: ignore[list-item]
        ),
        timeout=CALL_TIMEOUT_S,
    )
    return sum(c.recipients for c in reply.channels if c.channel == of)


async def register_subscribers(
    channel: grpc.aio.Channel,
    *,
    place: Place,
    count: int,
    first: int = 0,
    block: int = 0,
    seed: int = 7,
    concurrency: int = 32,
    languages: Sequence[str] = ("nl", "nl", "nl", "fr", "en"),
    progress: Callable[[int], None] = lambda _: None,
    channels: Sequence[int] = (targeting_pb2.CHANNEL_SMS,),
    number: Callable[[int], str] | None = None,
    email: Callable[[int], str] | None = None,
) -> None:
    """Register `count` subscribers (SMS only, unless `channels` says) at home inside the place's
    zone; `number` gives the i-th one's phone (the operators' mobiles by default); `email`, when
    given, the i-th one's e-mail address instead of a phone."""
    stub = targeting_pb2_grpc.TargetingStub(channel)
    rng = random.Random(seed)
    points = [place.random_point(rng) for _ in range(first + count)][first:]
    langs = [rng.choice(languages) for _ in range(first + count)][first:]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            lon, lat = points[i]
            await stub.RegisterSubscriber(
                targeting_pb2.RegisterSubscriberRequest(
                    subscriber=targeting_pb2.Subscriber(
                        phone=""
                        if email is not None
                        else (number or (lambda n: phone(n, block=block)))(first + i),
                        email=email(first + i) if email is not None else "",
                        language=langs[i],
                        channels=channels,  # type: ignore[arg-type]
                        addresses=[
                            targeting_pb2.Address(
                                kind=targeting_pb2.ADDRESS_KIND_HOME, lon=lon, lat=lat
                            )
                        ],
                    )
                ),
                timeout=CALL_TIMEOUT_S,
            )
            progress(1)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, count)))))


def alert_spec(
    *,
    place: Place,
    kind: int = alerting_pb2.ALERT_KIND_TEST,
    headline: str = "Test of the public warning system",
    expires_in: timedelta = timedelta(hours=1),
    texts: dict[str, tuple[str, str, str, str]] | None = None,
) -> alerting_pb2.AlertSpec:
    """An SMS alert to the place's zone, in the four languages: one SMS segment each unless
    `texts` gives (event, headline, description, instruction) per language."""
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) + expires_in)
    texts = texts or {
        "nl": ("Test", "Test van BE-Alert", "Dit is een test.", "Niets te doen."),
        "fr": ("Test", "Test de BE-Alert", "Ceci est un test.", "Rien a faire."),
        "de": ("Test", "Test von BE-Alert", "Dies ist ein Test.", "Nichts zu tun."),
        "en": ("Test", headline, "This is a test.", "Nothing to do."),
    }
    return alerting_pb2.AlertSpec(
        kind=kind,  # type: ignore[arg-type]
        category="Safety",
        urgency="Immediate",
        severity="Minor",
        certainty="Observed",
        infos=[
            alerting_pb2.Info(language=lang, event=e, headline=h, description=d, instruction=i)
            for lang, (e, h, d, i) in texts.items()
        ],
        zone_geojson=place.zone_geojson(),
        area_description=f"{place.name} (demo zone)",
        channels=[alerting_pb2.CHANNEL_SMS],
        expires=expires,
        sender="BE-Alert",
    )


#: Texts of one, two and three SMS segments in the citizens' languages, as real alerts are: Dutch
#: fits one GSM segment, French with its curly apostrophe is two UCS-2 segments, German three
#: GSM segments, English one. An operator's link limit counts every one of those segments.
MIXED_TEXTS: dict[str, tuple[str, str, str, str]] = {
    "nl": ("Brand", "Brand in de haven", "Blijf binnen.", "Sluit ramen en deuren."),
    "fr": (
        "Incendie",
        "Incendie chimique au port",
        "Un nuage de fum\u00e9e se d\u00e9place vers le centre.",
        "Restez \u00e0 l\u2019int\u00e9rieur, fermez portes et fen\u00eatres.",
    ),
    "de": (
        "Brand",
        "Chemischer Brand im Hafen von Antwerpen",
        "Eine Rauchwolke zieht in Richtung Stadtzentrum. Die Feuerwehr ist vor Ort und "
        "bek\u00e4mpft den Brand. Messungen der Luftqualit\u00e4t laufen in allen Vierteln.",
        "Bleiben Sie drinnen, schliessen Sie Fenster und T\u00fcren, schalten Sie die "
        "L\u00fcftung aus und verfolgen Sie die Nachrichten im Radio. Rufen Sie nicht 112 an, "
        "ausser in Lebensgefahr. Weitere Informationen folgen.",
    ),
    "en": ("Fire", "Chemical fire at the port", "Stay inside.", "Close windows and doors."),
}


async def create_alert(
    channel: grpc.aio.Channel, issuer: Metadata, *, spec: alerting_pb2.AlertSpec, key: str
) -> alerting_pb2.Alert:
    """CreateAlert with an idempotency key."""
    stub = alerting_pb2_grpc.AlertingServiceStub(channel)
    return await stub.CreateAlert(
        alerting_pb2.CreateAlertRequest(idempotency_key=key, spec=spec),
        metadata=issuer,
        timeout=CALL_TIMEOUT_S,
    )


async def watch(
    channel: grpc.aio.Channel, issuer: Metadata, *, alert_id: str, timeout: float
) -> AsyncGenerator[alerting_pb2.AlertProgress, None]:
    """WatchAlert until its final message or `timeout` seconds (DEADLINE_EXCEEDED then)."""
    stub = alerting_pb2_grpc.AlertingServiceStub(channel)
    call = stub.WatchAlert(
        alerting_pb2.WatchAlertRequest(alert_id=alert_id), metadata=issuer, timeout=timeout
    )
    async for progress in call:
        yield progress
        if progress.final:
            return


def sms_progress(progress: alerting_pb2.AlertProgress) -> alerting_pb2.ChannelProgress:
    """The SMS channel's counts of a progress message (zeros before the first)."""
    return channel_progress(progress, alerting_pb2.CHANNEL_SMS)


def channel_progress(
    progress: alerting_pb2.AlertProgress, channel: int
) -> alerting_pb2.ChannelProgress:
    """One channel's counts of a progress message (zeros before the first)."""
    for ch in progress.channels:
        if ch.channel == channel:
            return ch
    return alerting_pb2.ChannelProgress(channel=channel)  # type: ignore[arg-type]


async def deliver(
    channel: grpc.aio.Channel, issuer: Metadata, *, alert_id: str, timeout: float
) -> alerting_pb2.ChannelProgress:
    """Send an alert, watch it to its final message; its last SMS counts."""
    stub = alerting_pb2_grpc.AlertingServiceStub(channel)
    await stub.SendAlert(
        alerting_pb2.SendAlertRequest(alert_id=alert_id), metadata=issuer, timeout=CALL_TIMEOUT_S
    )
    last = alerting_pb2.ChannelProgress(channel=alerting_pb2.CHANNEL_SMS)
    async for progress in watch(channel, issuer, alert_id=alert_id, timeout=timeout):
        last = sms_progress(progress)
    return last


def demo_cell_sites(database_url: str, *, operators: tuple[str, ...], place: Place = GENT) -> int:
    """A few cell sites of every operator over the place (cell broadcast needs cells); the count.

    Only where the deployment has no cell sites yet: a real one loads the operators' own.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM cell_sites)").fetchone() == (True,):
            return 0
        rows = [
            (op, f"{op}-{place.name.lower()}-{i}", *place._offset(dx, dy), 900.0)
            for op in operators
            for i, (dx, dy) in enumerate([(-600, -600), (-600, 600), (600, -600), (600, 600)])
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO cell_sites (operator, cell_id, lon, lat, radius_m)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
        return len(rows)

"""The `make run` demo: a test alert to a few thousand synthetic citizens of Gent, watched live.

The supervisor calls `run_demo` once every service is SERVING (unless --no-demo). It seeds what is
missing (the first admin, the entity of Gent with its territory, an issuer, the subscribers in
the zone), creates a test alert, previews it, sends it, shows its progress from WatchAlert until
every SMS has an outcome, and prints the outcome. It ends by itself within DEMO_TIMEOUT_S and
never takes the stack down: a failure is printed, and the stack keeps running.

Credentials of the demo's accounts live in `<var>/demo/credentials.json` (mode 0600), so a second
`make run` on the same data logs in again instead of seeding twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc
from tocsin.targeting.v1 import targeting_pb2

from services.kernel.tls import connect
from stack import demo_infoline, demo_national, pki, seed
from stack.services import SERVICES

logger = logging.getLogger(__name__)

#: Subscribers the demo zone should hold.
DEMO_SUBSCRIBERS = 3000
#: Of whom this many more are reached by a voice call on their landline (voice only).
DEMO_VOICE_SUBSCRIBERS = 40
#: The whole demo ends within this many seconds, however it goes.
DEMO_TIMEOUT_S = 120.0
#: Printed first on the outcome line (tests/stack/test_demo.py reads it).
OUTCOME = "demo: outcome"
#: Printed first on the voice calls' line (tests/stack/test_demo.py reads it).
CALLS = "demo: calls"

ADMIN = "demo-admin"
ISSUER = "demo-issuer-gent"


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Outcome:
    """What the demo alert came to."""

    targeted: int
    delivered: int
    failed: int
    units: int
    elapsed_s: float
    #: Voice calls: recipients, answered (one unit each), failed after their attempts.
    calls: int = 0
    answered: int = 0
    calls_failed: int = 0


def run_demo(*, alerting: str, var: Path) -> None:
    """Seed, send and watch the demo alert; print the outcome or why there is none."""
    console = Console(highlight=False, soft_wrap=True)
    console.print("demo: a test alert to the synthetic citizens of Gent (--no-demo skips this)")
    try:
        outcome = asyncio.run(asyncio.wait_for(_demo(alerting, var, console), DEMO_TIMEOUT_S))
    except TimeoutError:
        console.print(f"demo: gave up after {DEMO_TIMEOUT_S:.0f} s; the stack keeps running")
        return
    except (DemoError, seed.SeedError) as exc:
        console.print(f"demo: {exc}; the stack keeps running")
        return
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
        console.print(f"demo: a call failed: {code.name} {details}; the stack keeps running")
        return
    except Exception:
        # The demo is a guest of the supervisor: whatever breaks it must not stop the stack.
        logger.exception("demo: failed unexpectedly; the stack keeps running")
        return
    console.print(
        f"{OUTCOME}: targeted {outcome.targeted}, delivered {outcome.delivered},"
        f" failed {outcome.failed}, units charged {outcome.units},"
        f" elapsed {outcome.elapsed_s:.1f} s"
    )
    console.print(
        f"{CALLS}: targeted {outcome.calls}, answered {outcome.answered},"
        f" failed {outcome.calls_failed}"
    )


def _address(alerting: str, service: str) -> str:
    """A sibling service's address: the alerting port tells the stack's port offset."""
    host, _, port = alerting.rpartition(":")
    ports = {s.name: s.grpc_port for s in SERVICES}
    return f"{host}:{int(port) - ports['alerting'] + ports[service]}"


def _database_url(var: Path) -> str:
    """The stack's PostgreSQL: DATABASE_URL, or the embedded server's port from its pid file."""
    external = os.environ.get("DATABASE_URL")
    if external:
        return external
    pid_file = var / "pg" / "postmaster.pid"
    try:
        port = int(pid_file.read_text(encoding="utf-8").splitlines()[3])
    except (OSError, IndexError, ValueError) as exc:
        raise DemoError(f"cannot tell where PostgreSQL listens ({pid_file}: {exc})") from None
    return f"postgresql://postgres@127.0.0.1:{port}/tocsin"


def _credentials(var: Path) -> dict[str, str]:
    """The demo accounts' passwords, made up and kept on first use."""
    path = var / "demo" / "credentials.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        return stored
    creds = {ADMIN: seed.new_password(), ISSUER: seed.new_password()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(creds), encoding="utf-8")
    return creds


async def _issuer(
    channel: grpc.aio.Channel, var: Path, console: Console
) -> tuple[seed.Metadata, int]:
    """The demo issuer's token and entity, creating admin, entity and issuer where missing."""
    creds = _credentials(var)
    if await seed.bootstrap_admin(
        database_url=_database_url(var), username=ADMIN, password=creds[ADMIN]
    ):
        console.print(f"demo: created the first admin {ADMIN!r}")
    try:
        admin = seed.bearer(await seed.login(channel, username=ADMIN, password=creds[ADMIN]))
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        raise DemoError(
            "an admin exists that this demo did not create (or its credentials in"
            f" {var / 'demo'} are gone); run with --no-demo or a fresh --var"
        ) from None
    entity_id = await seed.ensure_entity(channel, admin, place=seed.GENT)
    await seed.ensure_issuer(
        channel, admin, entity_id=entity_id, username=ISSUER, password=creds[ISSUER]
    )
    token = await seed.login(channel, username=ISSUER, password=creds[ISSUER])
    return seed.bearer(token), entity_id


async def _population(alerting_address: str, var: Path, entity_id: int, console: Console) -> None:
    """Register the subscribers the zone still lacks (none on a second run).

    Registering is the registration front end's right, counting a zone's audience alerting's
    (docs/security.md): the demo holds both development certificates.
    """
    address = _address(alerting_address, "targeting")
    async with (
        connect(address, service="targeting", settings=pki.client_settings(var)) as targeting,
        connect(
            address, service="targeting", settings=pki.client_settings(var, "alerting")
        ) as counting,
    ):
        await _register(targeting, counting, entity_id, console)


async def _register(
    targeting: grpc.aio.Channel, counting: grpc.aio.Channel, entity_id: int, console: Console
) -> None:
    await _register_voice(targeting, counting, entity_id, console)
    have = await seed.audience(counting, entity_id=entity_id, place=seed.GENT)
    if have >= DEMO_SUBSCRIBERS:
        console.print(f"demo: {have} subscribers in the zone already")
        return
    with _bar(console) as bar:
        task = bar.add_task("subscribers", total=DEMO_SUBSCRIBERS - have, detail="registered")
        await seed.register_subscribers(
            targeting,
            place=seed.GENT,
            count=DEMO_SUBSCRIBERS - have,
            first=have,
            progress=lambda n: bar.advance(task, n),
        )


async def _register_voice(
    targeting: grpc.aio.Channel, counting: grpc.aio.Channel, entity_id: int, console: Console
) -> None:
    """Landline subscribers reached by voice, those the zone still lacks."""
    have = await seed.audience(
        counting, entity_id=entity_id, place=seed.GENT, of=targeting_pb2.CHANNEL_VOICE
    )
    if have >= DEMO_VOICE_SUBSCRIBERS:
        return
    await seed.register_subscribers(
        targeting,
        place=seed.GENT,
        count=DEMO_VOICE_SUBSCRIBERS - have,
        first=have,
        seed=11,
        channels=(targeting_pb2.CHANNEL_VOICE,),
        number=seed.landline,
    )
    console.print(f"demo: {DEMO_VOICE_SUBSCRIBERS - have} landline subscribers reached by voice")


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("demo: {task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _print_preview(preview: alerting_pb2.PreviewAlertResponse, console: Console) -> None:
    parts = ", ".join(
        f"{a.language} {a.recipients}"
        for a in preview.audiences
        if a.channel == alerting_pb2.CHANNEL_SMS
    )
    calls = ", ".join(
        f"{a.language} {a.recipients}"
        for a in preview.audiences
        if a.channel == alerting_pb2.CHANNEL_VOICE
    )
    console.print(
        f"demo: preview: SMS to {parts or 'nobody'}; {preview.estimated_units} units,"
        f" EUR {preview.estimated_cost_cents / 100:.2f} excl. VAT"
    )
    console.print(f"demo: preview: voice calls to {calls or 'nobody'}")


async def _demo(alerting: str, var: Path, console: Console) -> Outcome:
    async with connect(alerting, settings=pki.client_settings(var)) as channel:
        issuer, entity_id = await _issuer(channel, var, console)
        await _population(alerting, var, entity_id, console)
        stub = alerting_pb2_grpc.AlertingServiceStub(channel)
        spec = seed.alert_spec(place=seed.GENT, headline="Test of the BE-Alert demo")
        spec.channels.append(alerting_pb2.CHANNEL_VOICE)  # the landline subscribers' calls
        alert = await seed.create_alert(channel, issuer, spec=spec, key=f"demo-{uuid.uuid4()}")
        preview = await stub.PreviewAlert(
            alerting_pb2.PreviewAlertRequest(alert_id=alert.id),
            metadata=issuer,
            timeout=seed.CALL_TIMEOUT_S,
        )
        _print_preview(preview, console)
        started = time.monotonic()
        await stub.SendAlert(
            alerting_pb2.SendAlertRequest(alert_id=alert.id),
            metadata=issuer,
            timeout=seed.CALL_TIMEOUT_S,
        )
        console.print(f"demo: alert {alert.id} sent; watching it")
        last = alerting_pb2.ChannelProgress(channel=alerting_pb2.CHANNEL_SMS)
        voice = alerting_pb2.ChannelProgress(channel=alerting_pb2.CHANNEL_VOICE)
        with _bar(console) as bar:
            task = bar.add_task("SMS", total=None, detail="")
            calls = bar.add_task("calls", total=None, detail="")
            async for progress in seed.watch(
                channel, issuer, alert_id=alert.id, timeout=DEMO_TIMEOUT_S
            ):
                last = seed.sms_progress(progress)
                bar.update(
                    task,
                    total=last.targeted or None,
                    completed=last.delivered + last.failed,
                    detail=f"sent {last.submitted}, delivered {last.delivered},"
                    f" failed {last.failed}",
                )
                voice = seed.channel_progress(progress, alerting_pb2.CHANNEL_VOICE)
                bar.update(
                    calls,
                    total=voice.targeted or None,
                    completed=voice.delivered + voice.failed,
                    detail=f"answered {voice.delivered}, failed {voice.failed}",
                )
        final = await stub.GetAlert(
            alerting_pb2.GetAlertRequest(alert_id=alert.id),
            metadata=issuer,
            timeout=seed.CALL_TIMEOUT_S,
        )
        charged = final.units_prepaid + final.units_postpaid
        # The emergency information line for the alert (docs/infoline.md).
        await demo_infoline.show(
            channel,
            admin=seed.bearer(
                await seed.login(channel, username=ADMIN, password=_credentials(var)[ADMIN])
            ),
            issuer=issuer,
            mayor_username=ISSUER,
            entity_id=entity_id,
            alert_id=alert.id,
            console=console,
        )
        # A test on cell broadcast (identifier 4380) and LB-SMS: the national crisis centre's.
        await demo_national.show(
            channel,
            admin=seed.bearer(
                await seed.login(channel, username=ADMIN, password=_credentials(var)[ADMIN])
            ),
            var=var,
            console=console,
        )
        return Outcome(
            targeted=last.targeted,
            delivered=last.delivered,
            failed=last.failed,
            units=charged,
            elapsed_s=time.monotonic() - started,
            calls=voice.targeted,
            answered=voice.delivered,
            calls_failed=voice.failed,
        )

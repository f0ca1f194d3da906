"""The demo's national test: the crisis centre's monthly test on cell broadcast and LB-SMS.

A municipality's test may not use the operators' channels (docs/security.md: LB-SMS and cell
broadcast for real emergencies, tests and exercises only when the national crisis centre runs
them), so `stack.demo`'s Gent alert stays on SMS. This part seeds the national crisis centre
(type 1, territory kind `country`) and an issuer of it, sends a test over Gent on cell broadcast
and LB-SMS, follows each operator's answer in WatchAlert until every operator has one, then
cancels the test so that each CBC deletes it again. Being a test, it goes out on EU-Alert's test
identifier 4380 (4393 for its other languages): every operator's CBC simulator logs what it got.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
from rich.console import Console
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc

from services.cellbroadcast import identifiers
from stack import seed

#: The national crisis centre of the demo.
NATIONAL = "Nationaal Crisiscentrum (tocsin demo)"
ISSUER = "demo-issuer-ncc"
#: Its territory: a rough outline of Belgium (lon, lat) (a deployment loads the real one).
OUTLINE = (
    (2.55, 51.09), (3.28, 51.35), (3.90, 51.21), (4.25, 51.37), (4.80, 51.50), (5.10, 51.43),
    (5.30, 51.26), (5.80, 51.16), (5.70, 50.80), (6.02, 50.75), (6.40, 50.33), (6.10, 50.15),
    (5.80, 49.90), (5.90, 49.55), (5.45, 49.50), (4.85, 49.79), (4.85, 50.15), (4.20, 49.98),
    (4.10, 50.30), (3.70, 50.35), (3.30, 50.50), (2.85, 50.70), (2.55, 50.85), (2.55, 51.09),
)  # fmt: skip
BELGIUM = json.dumps({"type": "Polygon", "coordinates": [[list(p) for p in OUTLINE]]})
#: The channels of the national test: the operators' presence channels.
CHANNELS = (alerting_pb2.CHANNEL_CELL_BROADCAST, alerting_pb2.CHANNEL_LB_SMS)
#: Seconds the demo waits for every operator's answer, then for the withdrawal.
ANSWER_TIMEOUT_S = 20.0
#: An operator's states that are its answer (the others are still being worked on).
ANSWERED = frozenset({"accepted", "refused", "withdrawn", "superseded"})
#: An operator's states once the withdrawal is through (a refused broadcast stays refused).
WITHDRAWN = frozenset({"withdrawn", "refused"})
#: Printed per operator and channel (tests/stack/test_demo.py reads it).
LINE = "demo: national test:"
NAMES = {
    alerting_pb2.CHANNEL_CELL_BROADCAST: "cell broadcast",
    alerting_pb2.CHANNEL_LB_SMS: "LB-SMS",
}


def _password(var: Path) -> str:
    """The national issuer's password, made up on first use and kept with the demo's others."""
    path = var / "demo" / "credentials.json"
    creds: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if ISSUER not in creds:
        creds[ISSUER] = seed.new_password()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(creds), encoding="utf-8")
    return creds[ISSUER]


async def _issuer(channel: grpc.aio.Channel, admin: seed.Metadata, var: Path) -> seed.Metadata:
    """The national issuer's token, creating the crisis centre and its issuer where missing."""
    entity_id = await seed.ensure_entity(
        channel,
        admin,
        place=seed.GENT,
        name=NATIONAL,
        territory_kind="country",
        territory=BELGIUM,
    )
    password = _password(var)
    await seed.ensure_issuer(
        channel, admin, entity_id=entity_id, username=ISSUER, password=password
    )
    return seed.bearer(await seed.login(channel, username=ISSUER, password=password))


def _spec() -> alerting_pb2.AlertSpec:
    spec = seed.alert_spec(
        place=seed.GENT, kind=alerting_pb2.ALERT_KIND_TEST, headline="National test of BE-Alert"
    )
    del spec.channels[:]
    spec.channels.extend(CHANNELS)
    return spec


def _identifiers(spec: alerting_pb2.AlertSpec) -> str:
    """The message identifiers the test goes out on (from the one table)."""
    primary = identifiers.identifier(
        kind="test", severity=spec.severity, urgency=spec.urgency, certainty=spec.certainty
    )
    others = ", ".join(i.language for i in spec.infos[1:])
    extra = primary + identifiers.ADDITIONAL_LANGUAGE_OFFSET
    return f"{primary} ({spec.infos[0].language})" + (f", {extra} ({others})" if others else "")


async def _follow(
    stub: alerting_pb2_grpc.AlertingServiceAsyncStub,
    issuer: seed.Metadata,
    *,
    alert_id: str,
    done: frozenset[str],
    console: Console,
) -> dict[tuple[str, int], str]:
    """Print each operator's state as it changes until every operator's is in `done`."""
    seen: dict[tuple[str, int], str] = {}
    call = stub.WatchAlert(
        alerting_pb2.WatchAlertRequest(alert_id=alert_id),
        metadata=issuer,
        timeout=ANSWER_TIMEOUT_S,
    )
    try:
        async for progress in call:
            for op in progress.operators:
                key = (op.operator, op.channel)
                if seen.get(key) == op.state:
                    continue
                seen[key] = op.state
                phones = f", {op.phones} phones reached" if op.phones else ""
                why = f": {op.reason}" if op.reason and op.state != "accepted" else ""
                console.print(
                    f"{LINE} {NAMES.get(op.channel, str(op.channel))} at {op.operator}"
                    f" {op.state} ({op.cells} cells{phones}){why}"
                )
            if seen and all(state in done for state in seen.values()):
                break
            if progress.final:
                break
    finally:
        call.cancel()
    return seen


async def show(
    channel: grpc.aio.Channel, *, admin: seed.Metadata, var: Path, console: Console
) -> dict[tuple[str, int], str]:
    """Send the national test, follow every operator's answer, withdraw it; the last states.

    A failed call ends this part only: the demo's own outcome still prints.
    """
    try:
        return await _show(channel, admin=admin, var=var, console=console)
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details()
        console.print(f"{LINE} a call failed: {code.name} {details}")
        return {}


async def _show(
    channel: grpc.aio.Channel, *, admin: seed.Metadata, var: Path, console: Console
) -> dict[tuple[str, int], str]:
    issuer = await _issuer(channel, admin, var)
    stub = alerting_pb2_grpc.AlertingServiceStub(channel)
    spec = _spec()
    alert = await seed.create_alert(channel, issuer, spec=spec, key=f"demo-national-{uuid.uuid4()}")
    await stub.SendAlert(
        alerting_pb2.SendAlertRequest(alert_id=alert.id),
        metadata=issuer,
        timeout=seed.CALL_TIMEOUT_S,
    )
    console.print(
        f"{LINE} {NATIONAL} sent test {alert.id} on cell broadcast ({_identifiers(spec)})"
        " and LB-SMS; every operator answers"
    )
    try:
        await _follow(stub, issuer, alert_id=alert.id, done=ANSWERED, console=console)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        console.print(f"{LINE} not every operator answered within {ANSWER_TIMEOUT_S:.0f} s")
    await stub.CancelAlert(
        alerting_pb2.CancelAlertRequest(alert_id=alert.id),
        metadata=issuer,
        timeout=seed.CALL_TIMEOUT_S,
    )
    console.print(f"{LINE} cancelled; every operator withdraws it")
    try:
        return await _follow(stub, issuer, alert_id=alert.id, done=WITHDRAWN, console=console)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
        console.print(f"{LINE} not every operator withdrew it within {ANSWER_TIMEOUT_S:.0f} s")
        return {}

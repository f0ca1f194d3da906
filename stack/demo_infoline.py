"""The demo's emergency information line: requested, acknowledged and opened by the simulator.

Run by `stack.demo` after its alert: the admin names the demo issuer mayor of Gent, the mayor
declares the municipal phase and activates a D5 line for the alert; the contact-centre simulator
acknowledges it and opens it a few seconds later. The line is then closed and the phase ended,
so that the next `make run` starts the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import grpc
from rich.console import Console
from tocsin.alerting.v1 import alerting_pb2, alerting_pb2_grpc, infoline_pb2, infoline_pb2_grpc

from stack import seed

#: Seconds the demo waits for the simulator to open the line.
OPEN_TIMEOUT_S = 30.0


async def _ignore_exists(call: Awaitable[object]) -> None:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


async def show(
    channel: grpc.aio.Channel,
    *,
    admin: seed.Metadata,
    issuer: seed.Metadata,
    mayor_username: str,
    entity_id: int,
    alert_id: str,
    console: Console,
) -> None:
    """Activate a line for the alert and follow it until the simulator has opened it."""
    lines = infoline_pb2_grpc.InfoLineServiceStub(channel)
    users = await alerting_pb2_grpc.AdminServiceStub(channel).ListUsers(
        alerting_pb2.ListUsersRequest(entity_id=entity_id), metadata=admin
    )
    mayor = next(u for u in users.users if u.username == mayor_username)
    await _ignore_exists(
        lines.AddAuthorisedPerson(
            infoline_pb2.AddAuthorisedPersonRequest(
                entity_id=entity_id,
                user_id=mayor.id,
                function=infoline_pb2.PERSON_FUNCTION_MAYOR,
            ),
            metadata=admin,
        )
    )
    await _ignore_exists(
        lines.DeclarePhase(
            infoline_pb2.DeclarePhaseRequest(
                entity_id=entity_id,
                level=infoline_pb2.PHASE_LEVEL_MUNICIPAL,
                reason="make run demo",
            ),
            metadata=issuer,
        )
    )
    line = await lines.ActivateLine(
        infoline_pb2.ActivateLineRequest(
            form=infoline_pb2.ActivationForm(
                kind=infoline_pb2.LINE_KIND_D5,
                description="Demo: questions about the test alert in Gent.",
                advice={"nl": "Dit is een test.", "fr": "Ceci est un test."},
                liaison=infoline_pb2.Contact(name="Demo liaison", phone="+3292680000"),
                alert_ids=[alert_id],
            )
        ),
        metadata=issuer,
        timeout=seed.CALL_TIMEOUT_S,
    )
    console.print(
        f"demo: information line {line.id} requested: {line.form.operators} operators,"
        f" open by {line.open_by.ToDatetime():%H:%M:%S} UTC"
    )
    seen = line.state
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while line.state != infoline_pb2.LINE_STATE_OPEN and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        line = await lines.GetLine(infoline_pb2.GetLineRequest(line_id=line.id), metadata=issuer)
        if line.state != seen:
            seen = line.state
            name = infoline_pb2.LineState.Name(line.state).removeprefix("LINE_STATE_").lower()
            console.print(f"demo: information line {name}, number {line.number}")
    if line.state != infoline_pb2.LINE_STATE_OPEN:
        console.print("demo: the simulator did not open the information line in time")
    await lines.CloseLine(
        infoline_pb2.CloseLineRequest(line_id=line.id, statement="End of the demo.", final=True),
        metadata=issuer,
    )
    await lines.EndPhase(infoline_pb2.EndPhaseRequest(entity_id=entity_id), metadata=issuer)

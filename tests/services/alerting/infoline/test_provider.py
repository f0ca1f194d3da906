"""The provider's HTTP adapter against the simulator and against peers that misbehave."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web

from services.alerting.infoline.model import (
    Contact,
    EventType,
    Form,
    Line,
    LineKind,
    LineState,
    QuestionAnswer,
)
from services.alerting.infoline.provider import HttpContactCentre
from services.kernel.errors import FailedPrecondition, Unavailable
from simulators.contactcentre.config import ContactCentreConfig
from simulators.contactcentre.server import ContactCentreSimulator

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
LINE = Line(
    id="3d0c8f7e-1111-4222-8333-444455556666",
    entity_id=7,
    requested_by="mayor-gent",
    form=Form(
        kind=LineKind.D2,
        exercise=False,
        description="Fire at a plant.",
        advice={"nl": "Blijf binnen."},
        liaison=Contact("Liaison", "+3292680000"),
        opening_hours="24/7",
        operators=4,
        desired_opening=None,
        alert_ids=(),
    ),
    state=LineState.REQUESTED,
    requested_at=NOW,
    open_by=NOW,
    acknowledged_at=None,
    opened_at=None,
    closed_at=None,
    number="",
    second_line="",
    opening_hours="24/7",
    operators=4,
    forward_to="",
    liaison_version=0,
)


@pytest.fixture
async def sim() -> AsyncIterator[ContactCentreSimulator]:
    server = ContactCentreSimulator(ContactCentreConfig(open_after_s=0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_every_call_reaches_the_simulator(sim: ContactCentreSimulator) -> None:
    provider = HttpContactCentre(base_url=f"http://127.0.0.1:{sim.port}/", timeout_s=5)
    try:
        await provider.activate(line=LINE)
        await provider.activate(line=LINE)
        events = await provider.events(line_id=LINE.id, after=0)
        assert [e.type for e in events] == [EventType.ACKNOWLEDGED, EventType.OPENED]
        assert events[0].number == "1771"
        await provider.liaison(
            line_id=LINE.id, version=1, items=(QuestionAnswer("Water?", "Safe."),)
        )
        await provider.transfer(line_id=LINE.id, number="+3292101010")
        await provider.close(line_id=LINE.id, statement="Over.", confirmed_by="mayor-gent")
        assert [e.type for e in await provider.events(line_id=LINE.id, after=2)] == [
            EventType.CLOSED
        ]
        received = sim.lines[LINE.id]
        assert received.activation["handled_by"] == "health_authority"
        assert received.liaison == {1: [{"question": "Water?", "answer": "Safe."}]}
        assert received.transfers == ["+3292101010"]
        # A line the provider does not know: its refusal, not an outage.
        with pytest.raises(FailedPrecondition, match="HTTP 404"):
            await provider.events(line_id="unknown", after=0)
    finally:
        await provider.aclose()


async def test_a_provider_down_is_unavailable(sim: ContactCentreSimulator) -> None:
    sim.config = ContactCentreConfig(unavailable=True)
    provider = HttpContactCentre(base_url=f"http://127.0.0.1:{sim.port}", timeout_s=5)
    try:
        with pytest.raises(Unavailable, match="HTTP 503"):
            await provider.activate(line=LINE)
    finally:
        await provider.aclose()


async def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        provider = HttpContactCentre(base_url=f"http://127.0.0.1:{port}", timeout_s=5)
        try:
            with pytest.raises(Unavailable, match="unreachable"):
                await provider.events(line_id=LINE.id, after=0)
        finally:
            await provider.aclose()


async def test_malformed_reports_are_unavailable_not_a_crash() -> None:
    async def garbage(_request: web.Request) -> web.Response:
        return web.json_response({"events": [{"seq": 1, "type": "teleported", "at": "x"}]})

    app = web.Application()
    app.router.add_get("/v1/lines/{line}/events", garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    provider = HttpContactCentre(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}", timeout_s=5)
    try:
        with pytest.raises(Unavailable, match="malformed events"):
            await provider.events(line_id=LINE.id, after=0)
    finally:
        await provider.aclose()
        await runner.cleanup()

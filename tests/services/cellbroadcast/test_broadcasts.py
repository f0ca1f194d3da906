"""Broadcast, update and withdraw as the operators' CBCs see them, with real PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.cellbroadcast import pages
from services.cellbroadcast.model import Channel, State
from services.cellbroadcast.pages import Pages
from services.kernel.errors import InvalidArgument
from simulators.lbsms.server import polygon_km2
from tests.services.cellbroadcast.conftest import CELLS, OPERATORS, ZONE, Wire, Wired, alert

pytestmark = pytest.mark.timeout(60)


def texts_of(message: dict[str, object]) -> tuple[str | None, str]:
    """Decode what a CBC received."""
    raw = message["pages"]
    assert isinstance(raw, list)
    dcs = message["dcs"]
    assert isinstance(dcs, int)
    return pages.decode(Pages(dcs, tuple(raw)))


async def wait_states(wired: Wired, alert_id: str, want: set[str], *, timeout: float = 20) -> None:
    """Wait until every request of the alert is in one of `want`."""
    broadcasts = wired.broadcasts
    async with asyncio.timeout(timeout):
        while True:
            rows = await broadcasts.status(alert_id=alert_id)
            if rows and all(r.state.value in want for r in rows):
                return
            await asyncio.sleep(0.05)


async def test_multilingual_broadcast_reaches_every_operator(wire: Wire) -> None:
    """Dutch on 4370 (DCS Dutch), French and German together on 4383; cells per operator."""
    wired = await wire()
    done = await wired.broadcasts.broadcast(
        alert(texts=(("nl", "Blijf binnen."), ("fr", "Restez à l'intérieur."), ("de", "Drinnen."))),
        channel=Channel.CELL_BROADCAST,
    )
    assert {r.operator: r.state for r in done} == {op: State.ACCEPTED for op in OPERATORS}
    for op, sim in wired.sims.items():
        created = sim.state.created()
        assert [m["message_id"] for m in created] == [4370, 4383]
        assert texts_of(created[0]) == ("nl", "Blijf binnen.")
        assert created[0]["dcs"] == pages.GSM7_LANGUAGE_DCS["nl"]
        assert texts_of(created[1]) == (None, "Restez à l'intérieur.\nDrinnen.")
        assert created[1]["dcs"] == pages.DCS_GSM7_UNSPECIFIED
        assert all(m["cells"] == [f"{op}-cell-{i}" for i in range(3)] for m in created)
        assert {m["msg_code"] for m in created} == {created[0]["msg_code"]}
        assert {m["update_nr"] for m in created} == {0}


async def test_ucs2_text_goes_as_ucs2_with_its_language(wire: Wire) -> None:
    """A character outside the 7-bit alphabet (ë): UCS-2, DCS 0x11 naming the language."""
    wired = await wire()
    await wired.broadcasts.broadcast(
        alert(texts=(("nl", "Overstroming: evacueer België-kust."),)),
        channel=Channel.CELL_BROADCAST,
    )
    created = wired.sims["opA"].state.created()
    assert [m["message_id"] for m in created] == [4370]
    assert created[0]["dcs"] == pages.DCS_UCS2_LANGUAGE
    assert texts_of(created[0]) == ("nl", "Overstroming: evacueer België-kust.")


@pytest.mark.parametrize(
    ("kind", "severity", "primary"),
    [("exercise", "Extreme", 4381), ("test", "Extreme", 4380), ("emergency", "Severe", 4375)],
)
async def test_identifiers_by_kind(wire: Wire, kind: str, severity: str, primary: int) -> None:
    """An exercise or a test never goes out on an alert identifier, whatever its severity."""
    wired = await wire()
    await wired.broadcasts.broadcast(
        alert(kind=kind, severity=severity), channel=Channel.CELL_BROADCAST
    )
    ids = [m["message_id"] for m in wired.sims["opB"].state.created()]
    assert ids == [primary, primary + 13]


async def test_update_deletes_then_posts_with_next_update_number(wire: Wire) -> None:
    """Same message code, update number + 1, delete-then-post (ECBE has no replace)."""
    wired = await wire()
    await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    await wired.broadcasts.broadcast(
        alert(version=2, texts=(("nl", "Einde."), ("fr", "Fin."))), channel=Channel.CELL_BROADCAST
    )
    sim = wired.sims["opC"]
    seen = [(e.method, e.message_id, e.status) for e in sim.state.events]
    assert seen == [
        ("POST", 4370, 201),
        ("POST", 4383, 201),
        ("DELETE", 4370, 200),
        ("DELETE", 4383, 200),
        ("POST", 4370, 201),
        ("POST", 4383, 201),
    ]
    created = sim.state.created()
    assert {m["msg_code"] for m in created} == {created[0]["msg_code"]}
    assert [m["update_nr"] for m in created] == [0, 0, 1, 1]
    assert texts_of(created[2]) == ("nl", "Einde.")
    rows = await wired.broadcasts.status(alert_id="a1")
    states = {(r.version, r.operator): r.state for r in rows}
    assert states[(1, "opC")] is State.ACCEPTED  # it was; the CBC now holds version 2
    assert states[(2, "opC")] is State.ACCEPTED


async def test_withdraw_deletes_at_every_operator(wire: Wire) -> None:
    """Cancel: DELETE of each identifier per operator; the broadcasts show as withdrawn."""
    wired = await wire()
    await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    done = await wired.broadcasts.withdraw(alert_id="a1")
    assert {r.operator: r.state for r in done} == {op: State.ACCEPTED for op in OPERATORS}
    for sim in wired.sims.values():
        assert [(e.method, e.message_id) for e in sim.state.events[2:]] == [
            ("DELETE", 4370),
            ("DELETE", 4383),
        ]
        assert sim.state.active == {}
    rows = await wired.broadcasts.status(alert_id="a1")
    assert {r.state for r in rows if r.action.value == "broadcast"} == {State.WITHDRAWN}


async def test_retried_request_never_broadcasts_twice(wire: Wire) -> None:
    """The same alert version asked again: the same rows, no second POST."""
    wired = await wire()
    first = await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    again = await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    assert [r.id for r in first] == [r.id for r in again]
    assert all(len(sim.state.created()) == 2 for sim in wired.sims.values())


async def test_conflict_for_our_own_message_is_acceptance(wire: Wire) -> None:
    """A POST whose 201 was lost: the retry's 409 is understood as ours."""
    wired = await wire()
    sim = wired.sims["opA"]
    sim.set(latency_s=3.0)  # longer than the client's 2 s timeout: the answer is lost
    done = await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    assert {r.operator: r.state for r in done}["opA"] in (State.REQUESTED, State.RETRYING)
    await wait_states(wired, "a1", {"accepted", "retrying"})
    sim.set(latency_s=0.0)
    await wait_states(wired, "a1", {"accepted"})
    assert [m["message_id"] for m in sim.state.created()] == [4370, 4383]
    assert any(e.status == 409 for e in sim.state.events)


async def test_one_cbc_down_does_not_hold_back_the_others(wire: Wire) -> None:
    """opB refuses connections: the others accept at once, opB retries and accepts on return."""
    wired = await wire(answer_wait_s=0.5)
    down = wired.sims["opB"]
    port = down.port
    await down.stop()
    done = await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    states = {r.operator: r.state for r in done}
    assert states == {"opA": State.ACCEPTED, "opB": State.RETRYING, "opC": State.ACCEPTED}
    row = next(r for r in done if r.operator == "opB")
    assert "no answer" in row.reason
    down.port = port
    await down.start()
    await wait_states(wired, "a1", {"accepted"})
    assert [m["message_id"] for m in down.state.created()] == [4370, 4383]


async def test_refusal_is_recorded_with_its_reason(wire: Wire) -> None:
    """A 400 is final: refused, with the CBC's text."""
    wired = await wire()
    wired.sims["opC"].set(refuse_share=1.0)
    done = await wired.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    row = next(r for r in done if r.operator == "opC")
    assert row.state is State.REFUSED
    assert "refused by the simulator" in row.reason


async def test_restart_in_the_middle_picks_up_open_requests(wire: Wire) -> None:
    """A process stops with opA down; another one picks up the request and finishes it once."""
    first = await wire(answer_wait_s=0.3, owner="process-1")
    down = first.sims["opA"]
    port = down.port
    await down.stop()
    await first.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    await first.sender.stop()  # the process dies: its requests stay open in PostgreSQL
    down.port = port
    await down.start()
    second = await wire(owner="process-2")
    async with asyncio.timeout(20):
        while True:
            await second.sender.sweep()
            rows = await second.broadcasts.status(alert_id="a1")
            if all(r.state is State.ACCEPTED for r in rows):
                break
            await asyncio.sleep(0.2)
    assert [m["message_id"] for m in down.state.created()] == [4370, 4383]


async def test_too_long_text_is_refused_naming_the_field(wire: Wire) -> None:
    """More than 15 pages: INVALID_ARGUMENT on `texts`, nothing queued."""
    wired = await wire()
    with pytest.raises(InvalidArgument) as caught:
        await wired.broadcasts.broadcast(
            alert(texts=(("fr", "ë" * 700),)), channel=Channel.CELL_BROADCAST
        )
    assert caught.value.field == "texts"
    assert await wired.broadcasts.status(alert_id="a1") == []


async def test_lbsms_reports_phones_reached_and_cancels(wire: Wire) -> None:
    """LB-SMS: one request per operator with the texts; phones reached; withdraw cancels."""
    wired = await wire()
    done = await wired.broadcasts.broadcast(alert(), channel=Channel.LB_SMS)
    assert {r.operator: (r.state, r.phones) for r in done} == {
        op: (State.ACCEPTED, 750) for op in OPERATORS
    }
    platform = wired.sims["opA"].lbsms
    assert platform.requests["a1.v1"]["texts"] == {
        "nl": "Blijf binnen.",
        "fr": "Restez à l'intérieur.",
    }
    await wired.broadcasts.withdraw(alert_id="a1")
    assert platform.cancelled == ["a1.v1"]


async def test_crash_after_the_post_is_not_a_second_broadcast(wire: Wire) -> None:
    """A process dies while its POST is answered: the next one's 409 is understood as ours."""
    first = await wire(answer_wait_s=0.3, owner="process-1")
    sim = first.sims["opA"]
    sim.set(latency_s=1.5)  # the CBC takes the message, then answers late
    await first.broadcasts.broadcast(alert(), channel=Channel.CELL_BROADCAST)
    await first.sender.stop()  # dies before the answer: nothing recorded for opA
    sim.set(latency_s=0.0)
    second = await wire(owner="process-2")
    async with asyncio.timeout(20):
        while True:
            await second.sender.sweep()
            rows = await second.broadcasts.status(alert_id="a1")
            if all(r.state is State.ACCEPTED for r in rows):
                break
            await asyncio.sleep(0.2)
    assert [m["message_id"] for m in sim.state.created()] == [4370, 4383]
    assert [e.status for e in sim.state.events if e.method == "POST"].count(409) >= 1


async def test_lbsms_zone_as_polygon_where_the_operator_takes_one(wire: Wire) -> None:
    """The zone goes as the alert's polygon to opB (its setting), as cells to the others; opB
    is asked even where the cell table knows none of its cells, opC (cells) then is not."""
    wired = await wire(lbsms_polygon=frozenset({"opB"}))
    wired.sims["opA"].lbsms.zones = ("cells",)
    wired.sims["opB"].lbsms.zones = ("polygon",)
    cells = {"opA": CELLS["opA"], "opB": (), "opC": ()}
    done = await wired.broadcasts.broadcast(
        alert(cells=cells, zone_geojson=ZONE), channel=Channel.LB_SMS
    )
    area_km2 = polygon_km2(json.loads(ZONE))
    assert {r.operator: (r.state, r.cells, r.phones) for r in done} == {
        "opA": (State.ACCEPTED, 3, 750),
        "opB": (State.ACCEPTED, 0, round(area_km2 * 400)),
    }
    assert wired.sims["opA"].lbsms.requests["a1.v1"]["zone"] == {"cells": list(CELLS["opA"])}
    assert wired.sims["opB"].lbsms.requests["a1.v1"]["zone"] == {"polygon": json.loads(ZONE)}
    assert wired.sims["opC"].lbsms.requests == {}
    # Cell broadcast keeps to the cells whatever the LB-SMS setting.
    cb = await wired.broadcasts.broadcast(
        alert(cells=cells, zone_geojson=ZONE), channel=Channel.CELL_BROADCAST
    )
    assert [r.operator for r in cb] == ["opA"]


async def test_a_platform_refuses_a_zone_kind_it_does_not_take(wire: Wire) -> None:
    """An operator set to cells whose platform takes polygons only: refused with its text."""
    wired = await wire()
    wired.sims["opA"].lbsms.zones = ("polygon",)
    done = await wired.broadcasts.broadcast(
        alert(cells={"opA": CELLS["opA"]}, zone_geojson=ZONE), channel=Channel.LB_SMS
    )
    assert [(r.operator, r.state) for r in done] == [("opA", State.REFUSED)]
    assert "this platform takes polygon" in done[0].reason


@pytest.mark.parametrize(
    "zone",
    ["{not json", '{"type":"Point","coordinates":[3.7,51.0]}', '{"type":"Polygon"}', "[]"],
)
async def test_a_malformed_zone_is_refused_naming_the_field(wire: Wire, zone: str) -> None:
    """INVALID_ARGUMENT on zone_geojson, before anything is recorded."""
    wired = await wire(lbsms_polygon=frozenset({"opB"}))
    with pytest.raises(InvalidArgument) as caught:
        await wired.broadcasts.broadcast(alert(zone_geojson=zone), channel=Channel.LB_SMS)
    assert caught.value.field == "zone_geojson"
    assert await wired.broadcasts.status(alert_id="a1") == []

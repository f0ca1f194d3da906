"""The simulated contact centre over real sockets: its feed, its clock, its faults, its CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulators.contactcentre.config import ContactCentreConfig
from simulators.contactcentre.server import ContactCentreSimulator, split

pytestmark = pytest.mark.timeout(30)

LINE = "7f1c2a5e-0000-4000-8000-000000000001"
ACTIVATION = {
    "line_id": LINE,
    "kind": "D5",
    "advice": {"nl": "Blijf binnen.", "fr": "Restez à l'intérieur.", "de": "Bleiben Sie drinnen."},
    "operators": 4,
}


class Peer:
    """An HTTP client of one simulator."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as response:
            return response.status, await response.json()

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        status, doc = await self.call("GET", f"/v1/lines/{LINE}/events?after={after}")
        assert status == 200
        events: list[dict[str, Any]] = doc["events"]
        return events


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def start(
    session: aiohttp.ClientSession, **config: Any
) -> tuple[ContactCentreSimulator, Peer]:
    sim = ContactCentreSimulator(ContactCentreConfig(**config))
    return sim, Peer(session, await sim.start())


def test_operators_split_evenly_at_least_one_each() -> None:
    assert split(4, ["fr", "nl"]) == {"fr": 2, "nl": 2}
    assert split(5, ["de", "fr", "nl"]) == {"de": 2, "fr": 2, "nl": 1}
    assert split(1, ["fr", "nl"]) == {"fr": 1, "nl": 1}


async def test_feed_follows_its_clock(session: aiohttp.ClientSession) -> None:
    sim, peer = await start(session, open_after_s=1200, calls={"nl": 300}, calls_per_hour=50)
    try:
        assert (await peer.call("PUT", f"/v1/lines/{LINE}", ACTIVATION))[0] == 200
        assert (await peer.call("PUT", f"/v1/lines/{LINE}", ACTIVATION))[0] == 200  # idempotent
        assert [e["type"] for e in await peer.events()] == ["acknowledged"]
        await peer.call("POST", "/control/advance", {"seconds": 1200 + 2 * 3600})
        events = await peer.events()
        assert [e["type"] for e in events] == ["acknowledged", "opened"] + ["figures"] * 6
        assert [e["seq"] for e in events] == list(range(1, 9))
        nl = [e for e in events if e.get("language") == "nl"]
        assert [e["offered"] for e in nl] == [300, 300]
        assert {e["operators"] for e in events if e["type"] == "figures"} == {1, 2}
        assert [e["seq"] for e in await peer.events(after=6)] == [7, 8]
        assert (await peer.call("PUT", f"/v1/lines/{LINE}/closure", {"statement": "x"}))[0] == 200
        closed = await peer.events(after=8)
        assert [e["type"] for e in closed] == ["closed"]
        # Once closed, no hour is reported any more, and the numbers already given stay put.
        await peer.call("POST", "/control/advance", {"seconds": 5 * 3600})
        assert [e["seq"] for e in await peer.events(after=8)] == [9]
        status, _ = await peer.call("GET", "/v1/lines/unknown/events")
        assert status == 404
    finally:
        await sim.stop()


async def test_never_opens_and_unavailable(session: aiohttp.ClientSession) -> None:
    sim, peer = await start(session, never_open=True)
    try:
        await peer.call("PUT", f"/v1/lines/{LINE}", ACTIVATION)
        await peer.call("POST", "/control/advance", {"seconds": 24 * 3600})
        assert [e["type"] for e in await peer.events()] == ["acknowledged"]
    finally:
        await sim.stop()
    sim, peer = await start(session, unavailable=True)
    try:
        status, doc = await peer.call("PUT", f"/v1/lines/{LINE}", ACTIVATION)
        assert status == 503
        assert doc == {"error": "provider unavailable"}
    finally:
        await sim.stop()


async def test_command_line(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.contactcentre",
        "--port",
        "0",
        "--open-after-s",
        "0",
        "--calls",
        "nl=10,fr=5",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert ready["event"] == "listening"
        peer = Peer(session, ready["port"])
        await peer.call("PUT", f"/v1/lines/{LINE}", ACTIVATION)
        await peer.call("POST", "/control/advance", {"seconds": 3600})
        figures = {e["language"]: e["offered"] for e in await peer.events() if "language" in e}
        assert figures == {"nl": 10, "fr": 5, "de": 120}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert json.loads(out.decode().splitlines()[-1]) == {"event": "stopped", "lines": 1}
    assert proc.returncode == 0

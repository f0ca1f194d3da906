"""The simulated provider: an HTTP/JSON server on its own clock, which tests may move forward.

It keeps what it received per line and derives its reports from the time that has passed on
its clock: acknowledgement, opening, one figures report per language line and full hour open,
closure. Nothing is scheduled: the feed is computed when asked, so moving the clock forward
(`POST /control/advance`) makes an hour pass at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from simulators.contactcentre.config import ContactCentreConfig

HOUR = timedelta(hours=1)


@dataclass
class SimLine:
    """One line as the provider knows it."""

    activation: dict[str, Any]
    received: datetime
    #: Changes of operators over time: (from when, operators in total).
    staffing: list[tuple[datetime, int]] = field(default_factory=list)
    liaison: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    transfers: list[str] = field(default_factory=list)
    arrangements: list[dict[str, Any]] = field(default_factory=list)
    closure: dict[str, Any] | None = None
    closure_received: datetime | None = None


def split(total: int, languages: list[str]) -> dict[str, int]:
    """Operators per language line: an even share, the remainder to the first, at least one."""
    if not languages:
        return {}
    share, rest = divmod(total, len(languages))
    return {lang: max(1, share + (1 if i < rest else 0)) for i, lang in enumerate(languages)}


class ContactCentreSimulator:
    """The provider's API on 127.0.0.1 (docs/infoline.md), with a movable clock."""

    def __init__(self, config: ContactCentreConfig) -> None:
        self.config = config
        self.lines: dict[str, SimLine] = {}
        self._offset = timedelta()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def now(self) -> datetime:
        """The simulator's clock: the wall clock moved forward by every `advance`."""
        return datetime.fromtimestamp(time.time(), UTC) + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._offset += timedelta(seconds=seconds)

    async def start(self) -> int:
        """Listen; return the port."""
        app = web.Application(middlewares=[self._faults])
        app.add_routes(
            [
                web.put("/v1/lines/{line}", self._activate),
                web.get("/v1/lines/{line}/events", self._events),
                web.put("/v1/lines/{line}/liaison/{version}", self._liaison),
                web.put("/v1/lines/{line}/transfer", self._transfer),
                web.put("/v1/lines/{line}/arrangements", self._arrange),
                web.put("/v1/lines/{line}/closure", self._close),
                web.post("/control/advance", self._advance),
                web.get("/control/lines/{line}", self._inspect),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.config.unavailable and not request.path.startswith("/control/"):
            return web.json_response({"error": "provider unavailable"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    def _line(self, request: web.Request) -> SimLine:
        line = self.lines.get(request.match_info["line"])
        if line is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "unknown line"}), content_type="application/json"
            )
        return line

    async def _activate(self, request: web.Request) -> web.Response:
        doc = await request.json()
        line_id = request.match_info["line"]
        if line_id not in self.lines:
            now = self.now()
            self.lines[line_id] = SimLine(doc, now, [(now, int(doc["operators"]))])
        return web.json_response({"line_id": line_id, "status": "received"})

    async def _liaison(self, request: web.Request) -> web.Response:
        line = self._line(request)
        line.liaison[int(request.match_info["version"])] = (await request.json())["items"]
        return web.json_response({"status": "received"})

    async def _transfer(self, request: web.Request) -> web.Response:
        self._line(request).transfers.append((await request.json())["number"])
        return web.json_response({"status": "transferring"})

    async def _arrange(self, request: web.Request) -> web.Response:
        line = self._line(request)
        doc = await request.json()
        line.arrangements.append(doc)
        line.staffing.append((self.now(), int(doc["operators"])))
        return web.json_response({"status": "arranged"})

    async def _close(self, request: web.Request) -> web.Response:
        line = self._line(request)
        if line.closure is None:
            line.closure = await request.json()
            line.closure_received = self.now()
        return web.json_response({"status": "closing"})

    async def _advance(self, request: web.Request) -> web.Response:
        self.advance(float((await request.json())["seconds"]))
        return web.json_response({"now": self.now().isoformat()})

    async def _inspect(self, request: web.Request) -> web.Response:
        line = self._line(request)
        return web.json_response(
            {
                "activation": line.activation,
                "liaison": {str(v): items for v, items in sorted(line.liaison.items())},
                "transfers": line.transfers,
                "arrangements": line.arrangements,
                "closure": line.closure,
            }
        )

    async def _events(self, request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        events = self.feed(self._line(request), until=self.now())
        return web.json_response({"events": [e for e in events if e["seq"] > after]})

    def feed(self, line: SimLine, *, until: datetime) -> list[dict[str, Any]]:
        """Every report of the line up to `until`, numbered in order."""
        cfg = self.config
        events: list[dict[str, Any]] = []
        acked = line.received + timedelta(seconds=cfg.ack_after_s)
        if acked <= until:
            events.append({"type": "acknowledged", "at": acked, "number": cfg.number})
        closed = None
        if line.closure_received is not None:
            closed = line.closure_received + timedelta(seconds=cfg.close_after_s)
        opened = line.received + timedelta(seconds=cfg.open_after_s)
        if not cfg.never_open and opened <= until and (closed is None or opened < closed):
            events.append({"type": "opened", "at": opened, "number": cfg.number})
            end = until if closed is None else min(until, closed)
            hour = opened
            languages = sorted(line.activation["advice"])
            while hour + HOUR <= end:
                staffed = split(self._operators_at(line, hour + HOUR), languages)
                for lang in languages:
                    events.append(self._figures(lang, hour, staffed[lang]))
                hour += HOUR
        if closed is not None and closed <= until:
            events.append({"type": "closed", "at": closed, "number": cfg.number})
        for seq, event in enumerate(events, start=1):
            event["seq"] = seq
            event["at"] = event["at"].isoformat()
        return events

    def _operators_at(self, line: SimLine, moment: datetime) -> int:
        """Operators in total at `moment` (an hour is reported with its staffing at its end)."""
        staffed = line.staffing[0][1]
        for since, operators in line.staffing:
            if since < moment:
                staffed = operators
        return staffed

    def _figures(self, language: str, hour: datetime, operators: int) -> dict[str, Any]:
        cfg = self.config
        offered = cfg.calls.get(language, cfg.calls_per_hour)
        abandoned = round(offered * cfg.abandon_ratio)
        return {
            "type": "figures",
            "at": hour + HOUR,
            "language": language,
            "hour_start": hour.isoformat(),
            "offered": offered,
            "answered": offered - abandoned,
            "abandoned": abandoned,
            "aht_s": cfg.aht_s,
            "operators": operators,
        }

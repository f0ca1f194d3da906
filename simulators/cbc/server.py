"""The simulated operator platform: osmo-cbc's ECBE REST API, and the LB-SMS one on the same port.

Like osmo-cbc it holds one active message per message identifier (409 on a second create, 404 on
deleting an unknown one) and keeps every request it saw, in order, for the tests to read.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from simulators.cbc.config import CbcConfig
from simulators.cbc.ecbe import BadRequest, check_message
from simulators.lbsms.server import LbSmsPlatform

PREFIX = "/api/ecbe/v1"


@dataclass
class Event:
    """One request as the CBC saw it, and its answer."""

    method: str
    message_id: int | None
    status: int
    message: dict[str, Any] | None = None
    #: time.perf_counter() when answered (benchmarks in the same process read it).
    at: float = field(default_factory=time.perf_counter)


@dataclass
class CbcState:
    """What the CBC holds and has seen."""

    active: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def created(self) -> list[dict[str, Any]]:
        """Every message the CBC accepted, in order."""
        return [e.message for e in self.events if e.status == 201 and e.message is not None]


class CbcSimulator:
    """One operator's CBC (and LB-SMS platform) on a loopback port; settings changeable live."""

    def __init__(self, config: CbcConfig) -> None:
        self.config = config
        self.state = CbcState()
        self.lbsms = LbSmsPlatform(
            phones_per_cell=config.phones_per_cell,
            phones_per_km2=config.phones_per_km2,
            zones=config.lbsms_zones,
        )
        self._rand = random.Random(config.seed)
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._misbehave])
        app.router.add_post(PREFIX + "/message", self._create)
        app.router.add_delete(PREFIX + "/message/{message_id}", self._delete)
        if self.config.lbsms:
            self.lbsms.add_routes(app)
        return app

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.config.outage:
            response: web.StreamResponse = web.Response(status=503, text="out of order (simulated)")
        elif self.config.error_share and self._rand.random() < self.config.error_share:
            response = web.Response(status=500, text="Internal Server Error (simulated)")
        else:
            response = await handler(request)
        if self.config.latency_s:
            # Done, then answered late: a client that gives up first loses the answer only.
            await asyncio.sleep(self.config.latency_s)
        return response

    def set(self, **changes: Any) -> None:
        """Change the misbehaviour while running (tests, bench)."""
        self.config = replace(self.config, **changes)

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._answer("POST", None, 400, "REST: No JSON Body")
        try:
            message = check_message(body, plmn_only=self.config.plmn_only)
        except BadRequest as exc:
            return self._answer("POST", None, 400, str(exc))
        message_id = message["message_id"]
        if self.config.refuse_share and self._rand.random() < self.config.refuse_share:
            return self._answer("POST", message_id, 400, "refused by the simulator", message)
        if self.config.conflict_all or message_id in self.state.active:
            return self._answer("POST", message_id, 409, "Could not allocate", message)
        self.state.active[message_id] = message
        return self._answer("POST", message_id, 201, "Created", message)

    async def _delete(self, request: web.Request) -> web.Response:
        raw = request.match_info["message_id"]
        if not raw.isdigit() or not 0 <= int(raw) <= 65535:
            return self._answer("DELETE", None, 400, "")
        message_id = int(raw)
        if self.state.active.pop(message_id, None) is None:
            return self._answer("DELETE", message_id, 404, "Unknown message ID")
        return self._answer("DELETE", message_id, 200, "OK")

    def _answer(
        self,
        method: str,
        message_id: int | None,
        status: int,
        text: str,
        message: dict[str, Any] | None = None,
    ) -> web.Response:
        self.state.events.append(Event(method, message_id, status, message))
        return web.Response(status=status, text=text)

    async def start(self) -> int:
        """Listen; return the port."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening (an outage: connections are refused until `start` again)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

"""A simulated operator's location-based SMS platform (the JSON request of gateways/lbsms).

It "sends" to `phones_per_cell` phones per cell of the zone (or 1000 for a polygon), answers
201 with the count, 409 with the same count for a request id it already has, 400 for a request
it cannot take, and keeps every request for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PREFIX = "/lbsms/v1"
#: Phones a polygon zone reaches (the simulator has no map).
POLYGON_PHONES = 1000


@dataclass
class LbSmsPlatform:
    """Requests taken, cancelled, and the answers given."""

    phones_per_cell: int = 250
    refuse: bool = False
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        """Serve the LB-SMS API on `app`."""
        app.router.add_post(PREFIX + "/requests", self._submit)
        app.router.add_delete(PREFIX + "/requests/{request_id}", self._cancel)

    def _phones(self, zone: dict[str, Any]) -> int:
        cells = zone.get("cells")
        if isinstance(cells, list):
            return self.phones_per_cell * len(cells)
        return POLYGON_PHONES

    def _answer(self, status: int, **body: Any) -> web.Response:
        self.statuses.append(status)
        if "error" in body:
            return web.Response(status=status, text=body["error"])
        return web.json_response(body, status=status)

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._answer(400, error="body is not JSON")
        if not isinstance(body, dict):
            return self._answer(400, error="body is not an object")
        request_id, zone, texts = body.get("request_id"), body.get("zone"), body.get("texts")
        if not isinstance(request_id, str) or not request_id:
            return self._answer(400, error="request_id: required")
        if not isinstance(zone, dict) or not ({"cells", "polygon"} & set(zone)):
            return self._answer(400, error="zone: cells or polygon required")
        if not isinstance(texts, dict) or not texts:
            return self._answer(400, error="texts: at least one language")
        if not isinstance(body.get("validity_s"), int) or body["validity_s"] <= 0:
            return self._answer(400, error="validity_s: a positive integer")
        if self.refuse:
            return self._answer(422, error="refused by the simulated operator")
        if request_id in self.requests:
            return self._answer(
                409, request_id=request_id, phones=self.requests[request_id]["phones"]
            )
        phones = self._phones(zone)
        self.requests[request_id] = {**body, "phones": phones}
        return self._answer(201, request_id=request_id, phones=phones)

    async def _cancel(self, request: web.Request) -> web.Response:
        request_id = request.match_info["request_id"]
        if request_id not in self.requests:
            return self._answer(404, error="unknown request")
        self.cancelled.append(request_id)
        return self._answer(200, request_id=request_id, phones=self.requests[request_id]["phones"])

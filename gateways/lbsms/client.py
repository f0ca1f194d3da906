"""Client of an operator's location-based SMS platform (JSON over HTTP).

No standard exists: this is the request the operators take, and one adapter per operator may
speak another. `POST /lbsms/v1/requests` with `request_id` (ours, unique per alert version),
`zone` (`cells`: the operator's cell identities, or `polygon`: GeoJSON), `texts` (language ->
text), `validity_s` and `sender`. Answers: 201 `{"request_id", "phones"}` (phones reached),
409 with the same body when that request id is already taken (a retry of ours), 400 or 422 with a
text (refused), 5xx (try again). `DELETE /lbsms/v1/requests/<request_id>` stops what was not yet
sent: 200, or 404 when unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateways.rest import Reply, RestClient
from telecom.answers import Answer, Outcome

PREFIX = "/lbsms/v1"


@dataclass(frozen=True)
class LbSmsRequest:
    """One location-based SMS request."""

    request_id: str
    texts: dict[str, str]
    validity_s: int
    sender: str
    cells: tuple[str, ...] = ()
    polygon_geojson: str = ""

    def to_json(self) -> dict[str, Any]:
        """The request's JSON body."""
        zone: dict[str, Any] = (
            {"cells": list(self.cells)}
            if self.cells
            else {"polygon": json.loads(self.polygon_geojson)}
        )
        return {
            "request_id": self.request_id,
            "zone": zone,
            "texts": self.texts,
            "validity_s": self.validity_s,
            "sender": self.sender,
        }


def _phones(text: str) -> int | None:
    try:
        value = json.loads(text).get("phones")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


class LbSmsClient:
    """An LB-SMS client for one operator's platform."""

    def __init__(self, *, base_url: str, timeout_s: float) -> None:
        self._rest = RestClient(base_url=base_url, prefix=PREFIX, timeout_s=timeout_s)

    async def submit(self, request: LbSmsRequest) -> Answer:
        """Ask for the SMS; 201 (or 409 for our own request id) carries the phones reached."""
        return _sort(await self._rest.call("POST", "/requests", request.to_json()), ok=201)

    async def cancel(self, request_id: str) -> Answer:
        """Stop what the platform has not sent yet."""
        return _sort(await self._rest.call("DELETE", f"/requests/{request_id}", None), ok=200)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._rest.close()


def _sort(reply: Reply, *, ok: int) -> Answer:
    status, text = reply.status, reply.text
    if status == ok:
        return Answer(Outcome.ACCEPTED, status, text, _phones(text))
    if status == 409:
        return Answer(Outcome.CONFLICT, status, text, _phones(text))
    if status == 404:
        return Answer(Outcome.UNKNOWN, status, text)
    if status in (400, 422):
        return Answer(Outcome.REFUSED, status, text)
    # 0: no answer came (the reason in `text`).
    return Answer(Outcome.FAILED, status, text)

"""The contact-centre provider over HTTP/JSON (the `ContactCentre` port's adapter).

The provider's API, as docs/infoline.md describes it: PUT the activation and every change under
the line's id (idempotent), GET the line's reports as an ordered feed after a sequence number.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiohttp

from services.alerting.infoline.model import (
    Arrangements,
    EventType,
    Figures,
    Line,
    ProviderEvent,
    QuestionAnswer,
)
from services.kernel.errors import FailedPrecondition, Unavailable


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def activation_document(line: Line) -> dict[str, Any]:
    """The activation as the provider receives it."""
    form = line.form
    return {
        "line_id": line.id,
        "entity_id": line.entity_id,
        "kind": form.kind.value,
        "handled_by": line.handled_by,
        "exercise": form.exercise,
        **form.details(),
        "requested_at": _iso(line.requested_at),
        "open_by": _iso(line.open_by),
    }


def parse_event(doc: dict[str, Any]) -> ProviderEvent:
    """One report of the provider's feed; ValueError (or KeyError, TypeError) if malformed."""
    kind = EventType(doc["type"])
    figures = None
    if kind is EventType.FIGURES:
        figures = Figures(
            language=str(doc["language"]),
            hour_start=datetime.fromisoformat(doc["hour_start"]),
            offered=int(doc["offered"]),
            answered=int(doc["answered"]),
            abandoned=int(doc["abandoned"]),
            aht_s=float(doc["aht_s"]),
            operators=int(doc["operators"]),
        )
    return ProviderEvent(
        seq=int(doc["seq"]),
        type=kind,
        at=datetime.fromisoformat(doc["at"]),
        number=str(doc.get("number", "")),
        figures=figures,
    )


class HttpContactCentre:
    """Talks to the provider's HTTP/JSON API at `base_url`, each call bounded by `timeout_s`."""

    def __init__(self, *, base_url: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self._base}{path}"
        try:
            async with self._session.request(method, url, json=body) as response:
                text = await response.text()
                if response.status >= 500:
                    raise Unavailable(f"contact-centre provider: HTTP {response.status} {text}")
                if response.status >= 400:
                    raise FailedPrecondition(
                        f"contact-centre provider refused: HTTP {response.status} {text}"
                    )
                return json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise Unavailable(f"contact-centre provider unreachable: {exc!r}") from None

    async def activate(self, *, line: Line) -> None:
        """PUT the activation form."""
        await self._call("PUT", f"/v1/lines/{line.id}", activation_document(line))

    async def events(self, *, line_id: str, after: int) -> list[ProviderEvent]:
        """GET the line's reports after `after`."""
        doc = await self._call("GET", f"/v1/lines/{line_id}/events?after={after}")
        try:
            return [parse_event(e) for e in doc["events"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(f"contact-centre provider: malformed events: {exc!r}") from None

    async def liaison(
        self, *, line_id: str, version: int, items: tuple[QuestionAnswer, ...]
    ) -> None:
        """PUT one version of the liaison update."""
        body = {"items": [{"question": i.question, "answer": i.answer} for i in items]}
        await self._call("PUT", f"/v1/lines/{line_id}/liaison/{version}", body)

    async def transfer(self, *, line_id: str, number: str) -> None:
        """PUT the local second line's number."""
        await self._call("PUT", f"/v1/lines/{line_id}/transfer", {"number": number})

    async def arrange(self, *, line_id: str, arrangements: Arrangements) -> None:
        """PUT reduced arrangements."""
        body = {
            "opening_hours": arrangements.opening_hours,
            "operators": arrangements.operators,
            "forward_to": arrangements.forward_to,
        }
        await self._call("PUT", f"/v1/lines/{line_id}/arrangements", body)

    async def close(self, *, line_id: str, statement: str, confirmed_by: str) -> None:
        """PUT the written closure."""
        body = {"statement": statement, "confirmed_by": confirmed_by}
        await self._call("PUT", f"/v1/lines/{line_id}/closure", body)

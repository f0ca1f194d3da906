"""A JSON-over-HTTP client on one base URL, shared by the operators' REST gateways (the cell
broadcast centres' ECBE, the location-based SMS platforms): one connection pool per client, opened
at first use, and every failure to get an answer (timeout, refused, reset) as status 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: its status (0: none came) and body (or why none came)."""

    status: int
    text: str


class RestClient:
    """Requests below `base_url` + `prefix`, each within `timeout_s`."""

    def __init__(self, *, base_url: str, prefix: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/") + prefix
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def call(self, method: str, path: str, body: Any) -> Reply:
        """`method` on `path` with a JSON `body` (None: none); never raises for the network."""
        try:
            async with self._client().request(method, self._base + path, json=body) as resp:
                return Reply(resp.status, await resp.text())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Reply(0, f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

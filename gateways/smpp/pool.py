"""Several binds to one operator used as one: submits go to a bound client with window room.

Choosing between operators is the SMS service's job; a pool only spreads one operator's traffic
over that operator's binds (accounts or connections).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from gateways.smpp.client import (
    BindConfig,
    SessionGate,
    SmppClient,
    SubmitRequest,
    SubmitResult,
)
from gateways.smpp.session import ReceiptHandler


class SmppPool:
    """The binds of one operator; `submit` picks the bound client with the fewest outstanding."""

    def __init__(
        self,
        configs: Sequence[BindConfig],
        *,
        on_receipt: ReceiptHandler | None = None,
        on_bind_state: Callable[[str, bool], None] | None = None,
        session_gate: SessionGate | None = None,
    ) -> None:
        if not configs:
            raise ValueError("a pool needs at least one bind")
        self.clients = [
            SmppClient(
                cfg,
                on_receipt=on_receipt,
                on_bind_state=_named(on_bind_state, cfg.name) if on_bind_state else None,
                session_gate=session_gate,
            )
            for cfg in configs
        ]
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Start every bind."""
        for client in self.clients:
            await client.start()

    async def wait_bound(self, timeout: float | None = None, *, all_binds: bool = False) -> None:
        """Wait until one bind (or every bind) is up."""
        async with asyncio.timeout(timeout):
            waits = [asyncio.ensure_future(c.wait_bound()) for c in self.clients]
            try:
                await asyncio.wait(
                    waits,
                    return_when=asyncio.ALL_COMPLETED if all_binds else asyncio.FIRST_COMPLETED,
                )
            finally:
                for w in waits:
                    w.cancel()

    def _pick(self) -> SmppClient:
        bound = [c for c in self.clients if c.is_bound]
        if not bound:
            return self.clients[0]
        return min(bound, key=lambda c: c.load)

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        """Submit through the least loaded bound client (waits if none is bound)."""
        return await self._pick().submit(req)

    async def submit_many(self, reqs: Sequence[SubmitRequest]) -> list[SubmitResult]:
        """Submit several requests spread over the binds; results in order."""
        return list(await asyncio.gather(*(self.submit(r) for r in reqs)))

    async def close(self) -> None:
        """Unbind every client."""
        await asyncio.gather(*(c.close() for c in self.clients))


def _named(callback: Callable[[str, bool], None], name: str) -> Callable[[bool], None]:
    return lambda state: callback(name, state)

"""The relay's late answers about a recipient, written through the worker's recorder: its
acceptance (`delivered`) right after the transaction, and a bounce (RFC 3464 DSN) later
(`failed`), in that order for each recipient."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from services.channel.model import State
from services.email import metrics
from services.email.channel import reference

logger = logging.getLogger(__name__)

#: The recorder's `receipt`: (route, reference, (state, error)) -> done once durable.
Receipt = Callable[[str, str, tuple[str, str]], "asyncio.Future[None]"]


class Report(Protocol):
    """One recipient's part of a DSN, as the gateway parses it."""

    @property
    def recipient(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def diagnostic(self) -> str: ...

    @property
    def permanent(self) -> bool: ...


class LateAnswers:
    """Acceptances and bounces per reference, a bounce never written before its acceptance.

    Both go to the recorder as receipts; two receipts of one row in the same write would update
    it in no defined order, so a bounce waits until the acceptance it follows is durable.
    """

    def __init__(self, *, receipt: Receipt, route: str) -> None:
        self._receipt = receipt
        self._route = route
        self._accepting: dict[str, asyncio.Future[None]] = {}

    def accepted(self, route: str, ref: str) -> None:
        """The relay took the recipient of `ref`: `delivered` (not awaited)."""
        fut = self._receipt(route, ref, (State.DELIVERED.value, ""))
        self._accepting[ref] = fut

        def done(f: asyncio.Future[None]) -> None:
            if self._accepting.get(ref) is f:
                del self._accepting[ref]
            if not f.cancelled() and f.exception() is not None:
                logger.warning("acceptance of %s not recorded: %s", ref, f.exception())

        fut.add_done_callback(done)

    async def bounced(self, tags: Sequence[str], reports: Sequence[Report]) -> None:
        """What the bounce receiver calls: each permanent failure marks its recipient failed.

        Returns once the outcomes are durable (the receiver then answers 250). A report that
        names no recipient of ours (an old tag, another sender's mail) is dropped after the
        recorder's hold; a delay notice changes nothing.
        """
        waits = []
        for report in reports:
            metrics.BOUNCES.labels(self._route, report.action or "unknown").inc()
            if not report.permanent:
                continue
            error = f"bounced {report.status} {report.diagnostic}".strip()[:200]
            for tag in tags:
                ref = reference(tag, report.recipient)
                before = self._accepting.get(ref)
                if before is not None:
                    await asyncio.wait([before])
                waits.append(self._receipt(self._route, ref, (State.FAILED.value, error)))
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.warning("bounce not matched to a recipient: %s", result)

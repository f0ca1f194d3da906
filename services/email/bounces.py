"""Bounces (RFC 3464 DSNs) recorded through the worker's recorder as late answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from services.channel.model import State
from services.email import metrics
from services.email.channel import reference

logger = logging.getLogger(__name__)

#: The recorder's `receipt`: (route, reference, (state, error)) -> done once durable.
Receipt = Callable[[str, str, tuple[str, str]], Awaitable[None]]


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


def recorder_of(
    *, receipt: Receipt, route: str
) -> Callable[[Sequence[str], Sequence[Report]], Awaitable[None]]:
    """What the bounce receiver calls: each permanent failure marks its recipient failed.

    Returns once the outcomes are durable (the receiver then answers 250). A report that names
    no recipient of ours (an old tag, another sender's mail) is dropped after the recorder's
    hold; a delay notice changes nothing.
    """

    async def record(tags: Sequence[str], reports: Sequence[Report]) -> None:
        waits = []
        for report in reports:
            metrics.BOUNCES.labels(route, report.action or "unknown").inc()
            if not report.permanent:
                continue
            error = f"bounced {report.status} {report.diagnostic}".strip()[:200]
            for tag in tags:
                ref = reference(tag, report.recipient)
                waits.append(receipt(route, ref, (State.FAILED.value, error)))
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                logger.warning("bounce not matched to a recipient: %s", result)

    return record

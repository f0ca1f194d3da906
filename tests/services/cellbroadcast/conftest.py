"""Three simulated operators (CBC and LB-SMS) on loopback, and the domain wired to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.cellbroadcast.__main__ import EcbeCbc, HttpLbSms
from services.cellbroadcast.broadcasts import Broadcasts, Platforms
from services.cellbroadcast.model import AlertVersion
from services.cellbroadcast.sender import Sender
from services.cellbroadcast.settings import CbcSpec
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from tests.services.kernel.conftest import start_service

__all__ = ["start_service"]

OPERATORS = ("opA", "opB", "opC")
CELLS = {op: tuple(f"{op}-cell-{i}" for i in range(3)) for op in OPERATORS}
#: A zone in Gent with a hole (a GeoJSON Polygon, about 0.6 km²).
ZONE = (
    '{"type":"Polygon","coordinates":[[[3.71,51.05],[3.72,51.05],[3.72,51.06],[3.71,51.06],'
    "[3.71,51.05]],[[3.714,51.054],[3.716,51.054],[3.716,51.056],[3.714,51.056],[3.714,51.054]]]}"
)


@dataclass
class Wired:
    """The domain under test and the operators it talks to."""

    broadcasts: Broadcasts
    sender: Sender
    sims: dict[str, CbcSimulator]


def alert(
    alert_id: str = "a1",
    *,
    version: int = 1,
    kind: str = "emergency",
    texts: tuple[tuple[str, str], ...] = (("nl", "Blijf binnen."), ("fr", "Restez à l'intérieur.")),
    severity: str = "Extreme",
    urgency: str = "Immediate",
    certainty: str = "Observed",
    cells: dict[str, tuple[str, ...]] | None = None,
    zone_geojson: str = "",
) -> AlertVersion:
    """An alert version to broadcast, expiring in an hour."""
    return AlertVersion(
        alert_id=alert_id,
        version=version,
        kind=kind,
        severity=severity,
        urgency=urgency,
        certainty=certainty,
        texts=texts,
        expires=datetime.now(UTC) + timedelta(hours=1),
        sender="BE-Alert",
        cells=CELLS if cells is None else cells,
        zone_geojson=zone_geojson,
    )


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, CbcSimulator]]:
    """One simulated operator platform per operator, each on its own free port."""
    out = {op: CbcSimulator(CbcConfig(name=op)) for op in OPERATORS}
    for sim in out.values():
        await sim.start()
    try:
        yield out
    finally:
        for sim in out.values():
            await sim.stop()


Wire = Callable[..., Awaitable[Wired]]


@pytest.fixture
async def wire(pg_pool: asyncpg.Pool, sims: dict[str, CbcSimulator]) -> AsyncIterator[Wire]:
    """Build the service's domain on the test database (several times: a restart)."""
    senders: list[Sender] = []

    async def build(
        *,
        answer_wait_s: float = 2.0,
        owner: str = "test-1",
        lbsms_polygon: frozenset[str] = frozenset(),
    ) -> Wired:
        base = {op: f"http://127.0.0.1:{sim.port}" for op, sim in sims.items()}
        sender = Sender(
            pool=pg_pool,
            cbcs={op: EcbeCbc(CbcSpec(url), timeout_s=2.0) for op, url in base.items()},
            lbsms={op: HttpLbSms(url, timeout_s=2.0) for op, url in base.items()},
            retry_min_s=0.05,
            retry_max_s=0.2,
            lease_s=1.0,
            owner=owner,
        )
        senders.append(sender)
        broadcasts = Broadcasts(
            pool=pg_pool,
            sender=sender,
            platforms=Platforms(cbc=set(sims), lbsms=set(sims), lbsms_polygon=lbsms_polygon),
            answer_wait_s=answer_wait_s,
        )
        return Wired(broadcasts, sender, sims)

    try:
        yield build
    finally:
        for sender in senders:
            await sender.stop()

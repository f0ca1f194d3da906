"""The information line inside the alerting process: its servicer and its provider syncer."""

from __future__ import annotations

import asyncpg
import grpc

from services.alerting.gate import Gate
from services.alerting.infoline.costs import Tariff
from services.alerting.infoline.lines import InfoLines
from services.alerting.infoline.ports import ContactCentre, utc_now
from services.alerting.infoline.servicer import add_servicer
from services.alerting.infoline.sync import Syncer
from services.alerting.settings import Settings
from services.kernel import Kernel


def tariff(settings: Settings) -> Tariff:
    """The provider's prices from the settings."""
    return Tariff(
        staff_hour=settings.infoline_staff_hour_eur,
        telephony_minute=settings.infoline_telephony_minute_eur,
    )


def install(
    kernel: Kernel[Settings],
    *,
    server: grpc.aio.Server,
    pool: asyncpg.Pool,
    gate: Gate,
    provider: ContactCentre,
) -> str:
    """Register InfoLineService and run its syncer for the life of the process; its full name."""
    settings = kernel.settings
    lines = InfoLines(pool=pool, provider=provider, clock=utc_now)
    syncer = Syncer(
        pool=pool,
        provider=provider,
        clock=utc_now,
        tariff=tariff(settings),
        audit_key=gate.audit_key,
    )
    kernel.add_background(syncer.run(interval_s=settings.infoline_sync_s), name="infoline-sync")
    return add_servicer(server, pool=pool, gate=gate, lines=lines)

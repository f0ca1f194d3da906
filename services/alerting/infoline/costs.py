"""What a line costs its activating authority: staff hours and telephony time, in the ledger.

The lines go into the same `ledger` table as communication units, so the monthly usage report
(`ledger.usage_report`) lists them with the rest without knowing about the information line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from services.alerting import store
from services.alerting.infoline.model import Figures, Line, LineKind

#: Ledger items (migrations/0050_infoline.sql lets the ledger hold them).
STAFF_HOURS = "infoline_staff_hours"
TELEPHONY_MINUTES = "infoline_telephony_minutes"


@dataclass(frozen=True)
class Tariff:
    """The provider's prices passed on to the authority, EUR excl. VAT."""

    #: One operator staffing a language line for one hour.
    staff_hour: Decimal
    #: One minute of a call handled (telephony).
    telephony_minute: Decimal


def staff_hours(*, line: Line, figures: Figures) -> int:
    """Operator hours billed for one hour's figures: none for D2 (the health authority's staff)."""
    return 0 if line.form.kind is LineKind.D2 else figures.operators


def telephony_minutes(figures: Figures) -> int:
    """Minutes of handled calls, rounded up: answered calls times their average handling time."""
    return math.ceil(figures.answered * figures.aht_s / 60 - 1e-9)


async def charge(conn: store.Conn, *, line: Line, figures: Figures, tariff: Tariff) -> None:
    """Write one hour's costs of one language line into the ledger, once (keyed by its period)."""
    period = f"infoline {line.id} {figures.language} {figures.hour_start.isoformat()}"
    for item, quantity, price in (
        (STAFF_HOURS, staff_hours(line=line, figures=figures), tariff.staff_hour),
        (TELEPHONY_MINUTES, telephony_minutes(figures), tariff.telephony_minute),
    ):
        if quantity <= 0:
            continue
        await conn.execute(
            "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur, period)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (entity_id, item, period) WHERE period IS NOT NULL DO NOTHING",
            line.entity_id,
            figures.hour_start,
            item,
            quantity,
            price * quantity,
            period,
        )

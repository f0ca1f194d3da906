"""The cost ledger per entity: subscription, prepaid packages, units charged, monthly usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from services.alerting import store
from services.alerting.metrics import UNITS_CHARGED
from services.channel import units as units_module
from services.kernel.errors import FailedPrecondition, InvalidArgument, NotFound

#: Prepaid packages on offer: units -> price in EUR.
PACKAGES = {100_000: Decimal("5500.00"), 50_000: Decimal("2750.00")}
#: One-off activation fee, EUR.
ACTIVATION_FEE = Decimal("200.00")
#: Yearly subscription, EUR.
YEARLY_FEE = Decimal("788.88")


#: Amounts in EUR to whole cents, and the price of units: the units module's (one price).
to_cents = units_module.to_cents
units_cost = units_module.price


@dataclass(frozen=True)
class Account:
    """An entity's billing state."""

    entity_id: int
    postpaid: bool
    prepaid_units: int
    activated_at: datetime


@dataclass(frozen=True)
class Billing:
    """How a number of units would be or was billed."""

    prepaid: int
    postpaid: int


@dataclass(frozen=True)
class UsageLine:
    """One line of a monthly report."""

    item: str
    quantity: int
    amount_cents: int


@dataclass(frozen=True)
class UsageReport:
    """An entity's usage in one calendar month (UTC)."""

    entity_id: int
    month: str
    alerts_sent: int
    alerts_by_kind: dict[str, int]
    units_prepaid: int
    units_postpaid: int
    lines: tuple[UsageLine, ...]
    total_cents: int
    prepaid_units_left: int


def _anniversary(start: datetime, years: int) -> datetime:
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return start.replace(year=start.year + years, day=28)


async def open_account(conn: store.Conn, *, entity_id: int, postpaid: bool, now: datetime) -> None:
    """Open an entity's account: activation fee and first year's subscription (once)."""
    await conn.execute(
        "INSERT INTO billing_accounts (entity_id, postpaid, activated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (entity_id) DO NOTHING",
        entity_id,
        postpaid,
        now,
    )
    await conn.execute(
        "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur, period)"
        " VALUES ($1, $2, 'activation', 1, $3, '0')"
        " ON CONFLICT (entity_id, item, period) WHERE period IS NOT NULL DO NOTHING",
        entity_id,
        now,
        ACTIVATION_FEE,
    )
    await charge_subscriptions(conn, entity_id=entity_id, until=now)


async def charge_subscriptions(conn: store.Conn, *, entity_id: int, until: datetime) -> None:
    """Charge every subscription year begun by `until` that is not charged yet."""
    activated = await conn.fetchval(
        "SELECT activated_at FROM billing_accounts WHERE entity_id = $1", entity_id
    )
    if activated is None:
        return
    year = 0
    while _anniversary(activated, year) <= until:
        await conn.execute(
            "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur, period)"
            " VALUES ($1, $2, 'subscription', 1, $3, $4)"
            " ON CONFLICT (entity_id, item, period) WHERE period IS NOT NULL DO NOTHING",
            entity_id,
            _anniversary(activated, year),
            YEARLY_FEE,
            str(year + 1),
        )
        year += 1


async def ensure_account(pool: asyncpg.Pool, *, entity_id: int, now: datetime) -> None:
    """Open the account of an entity registered elsewhere (without postpaid agreement)."""
    async with pool.acquire() as conn, conn.transaction():
        await open_account(conn, entity_id=entity_id, postpaid=False, now=now)


async def account(pool: asyncpg.Pool, *, entity_id: int) -> Account:
    """An entity's billing state; an entity without an account has nothing prepaid."""
    row = await pool.fetchrow("SELECT * FROM billing_accounts WHERE entity_id = $1", entity_id)
    if row is None:
        return Account(entity_id, False, 0, datetime.now(UTC))
    return Account(row["entity_id"], row["postpaid"], row["prepaid_units"], row["activated_at"])


async def add_package(pool: asyncpg.Pool, *, entity_id: int, units: int, now: datetime) -> Account:
    """Sell a prepaid package of 100,000 or 50,000 units."""
    price = PACKAGES.get(units)
    if price is None:
        sizes = " or ".join(f"{u:,}" for u in PACKAGES)
        raise InvalidArgument("units", f"packages hold {sizes} units")
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM entities WHERE id = $1", entity_id) is None:
            raise NotFound(f"entity {entity_id} does not exist")
        await open_account(conn, entity_id=entity_id, postpaid=False, now=now)
        await conn.execute(
            "UPDATE billing_accounts SET prepaid_units = prepaid_units + $2 WHERE entity_id = $1",
            entity_id,
            units,
        )
        await conn.execute(
            "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur)"
            " VALUES ($1, $2, 'package', $3, $4)",
            entity_id,
            now,
            units,
            price,
        )
    return await account(pool, entity_id=entity_id)


def plan(*, units: int, account: Account, emergency: bool) -> Billing:
    """How `units` would be billed; FailedPrecondition naming the shortfall when refused.

    Prepaid units go first. An emergency takes the rest postpaid, always. Another alert takes
    the rest postpaid only under a postpaid agreement; without one it is refused.
    """
    prepaid = min(units, account.prepaid_units)
    rest = units - prepaid
    if rest and not emergency and not account.postpaid:
        raise FailedPrecondition(
            f"needs about {units:,} communication units, {account.prepaid_units:,} prepaid left:"
            f" short of {rest:,} units (EUR {units_cost(rest):.2f}); buy a prepaid package or"
            " ask the crisis centre for a postpaid agreement"
        )
    return Billing(prepaid, rest)


async def charge(
    conn: store.Conn, *, entity_id: int, alert_id: str, units: int, now: datetime
) -> Billing:
    """Charge units handed to operators: prepaid while it lasts, postpaid beyond (in a txn)."""
    if units <= 0:
        return Billing(0, 0)
    left = await conn.fetchval(
        "SELECT prepaid_units FROM billing_accounts WHERE entity_id = $1 FOR UPDATE", entity_id
    )
    prepaid = min(units, left or 0)
    postpaid = units - prepaid
    if prepaid:
        await conn.execute(
            "UPDATE billing_accounts SET prepaid_units = prepaid_units - $2 WHERE entity_id = $1",
            entity_id,
            prepaid,
        )
        await conn.execute(
            "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur, alert_id)"
            " VALUES ($1, $2, 'units_prepaid', $3, 0, $4)",
            entity_id,
            now,
            prepaid,
            alert_id,
        )
        UNITS_CHARGED.labels("prepaid").inc(prepaid)
    if postpaid:
        await conn.execute(
            "INSERT INTO ledger (entity_id, at, item, quantity, amount_eur, alert_id)"
            " VALUES ($1, $2, 'units_postpaid', $3, $4, $5)",
            entity_id,
            now,
            postpaid,
            units_cost(postpaid),
            alert_id,
        )
        UNITS_CHARGED.labels("postpaid").inc(postpaid)
    return Billing(prepaid, postpaid)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """First instant of the month and of the next one (UTC) for `YYYY-MM`."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidArgument("month", "YYYY-MM, e.g. 2026-11") from None
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


async def usage_report(pool: asyncpg.Pool, *, entity_id: int, month: str) -> UsageReport:
    """What an entity used and owes for one month."""
    start, end = month_bounds(month)
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM entities WHERE id = $1", entity_id) is None:
            raise NotFound(f"entity {entity_id} does not exist")
        async with conn.transaction():
            await charge_subscriptions(conn, entity_id=entity_id, until=min(end, datetime.now(UTC)))
        rows = await conn.fetch(
            "SELECT item, sum(quantity) AS quantity, sum(amount_eur) AS amount FROM ledger"
            " WHERE entity_id = $1 AND at >= $2 AND at < $3 GROUP BY item ORDER BY item",
            entity_id,
            start,
            end,
        )
        kinds = await conn.fetch(
            "SELECT kind, count(*) AS n FROM alerts WHERE entity_id = $1 AND sent_at >= $2"
            " AND sent_at < $3 GROUP BY kind",
            entity_id,
            start,
            end,
        )
        left = await conn.fetchval(
            "SELECT prepaid_units FROM billing_accounts WHERE entity_id = $1", entity_id
        )
    lines = tuple(UsageLine(r["item"], int(r["quantity"]), to_cents(r["amount"])) for r in rows)
    by_item = {line.item: line for line in lines}
    by_kind = {r["kind"]: int(r["n"]) for r in kinds}
    return UsageReport(
        entity_id=entity_id,
        month=month,
        alerts_sent=sum(by_kind.values()),
        alerts_by_kind=by_kind,
        units_prepaid=by_item["units_prepaid"].quantity if "units_prepaid" in by_item else 0,
        units_postpaid=by_item["units_postpaid"].quantity if "units_postpaid" in by_item else 0,
        lines=lines,
        total_cents=sum(line.amount_cents for line in lines),
        prepaid_units_left=left or 0,
    )

"""Receipt ids written differently from the submit_sm_resp's, per operator as the operators file
says; a receipt that matches nothing is counted and logged with its operator (issue 16)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.kernel import SettingsError, load_settings
from services.sms.settings import Settings
from tests.services.sms.conftest import (
    Smscs,
    StartSms,
    StartSmscs,
    add_work,
    numbers,
    wait_outcomes,
)

STORES = {"DATABASE_URL": "postgresql://x@127.0.0.1/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
ALERT = "5a0c1e9e-0000-4000-8000-0000000001d1"
STRAY = "5a0c1e9e-0000-4000-8000-0000000001d2"


def operators_file(tmp_path: Path, sims: Smscs, **formats: str) -> Path:
    """One operator `orange` (every number) with two binds to its simulator, ids as `formats`."""
    port = sims.by_name["orange"].port
    extra = "".join(f', {key} = "{value}"' for key, value in formats.items())
    path = tmp_path / "operators.toml"
    path.write_text(
        '[operators.orange]\nprefixes = ["32"]\n'
        f'binds = [{{ host = "127.0.0.1", port = {port}{extra} }},'
        f' {{ host = "127.0.0.1", port = {port}{extra} }}]\n',
        encoding="utf-8",
    )
    return path


def unmatched(route: str) -> float:
    """tocsin_channel_receipts_unmatched_total of SMS receipts of `route`."""
    value = REGISTRY.get_sample_value(
        "tocsin_channel_receipts_unmatched_total", {"channel": "sms", "route": route}
    )
    return value or 0.0


async def test_receipts_in_decimal_match_submit_ids_in_hex_when_the_operator_says_so(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    # The SMSC answers submit_sm with a hexadecimal id and writes the receipt in decimal.
    sims = await smscs(("orange",), receipt_id_format="decimal")
    path = operators_file(tmp_path, sims, submit_id_format="hex", receipt_id_format="decimal")
    await start_sms(sims, operators_file=path)
    before = unmatched("orange")
    to = numbers(60)
    await add_work(redis_client, alert=ALERT, numbers=to)

    states = await wait_outcomes(
        pg_pool, alert=ALERT, total=len(to), states=["delivered"], timeout=30
    )

    assert states == {"delivered": len(to)}
    assert unmatched("orange") == before
    # The rows keep the canonical (decimal) ids the receipts named.
    ids = await pg_pool.fetch("SELECT message_ids FROM sms_messages WHERE alert = $1", ALERT)
    assert all(mid.isdigit() for row in ids for mid in row["message_ids"])


async def test_a_receipt_that_matches_nothing_is_counted_and_logged_with_its_operator(
    smscs: StartSmscs,
    start_sms: StartSms,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The same SMSC, but the operators file does not say how it writes its ids.
    sims = await smscs(("orange",), receipt_id_format="decimal")
    await start_sms(sims, operators_file=operators_file(tmp_path, sims), receipt_hold_s=0.3)
    before = unmatched("orange")
    # Ids 1 to 9 read the same in hex and decimal; from "a" on, the receipts name other numbers.
    to = numbers(20)
    await add_work(redis_client, alert=STRAY, numbers=to)

    await wait_outcomes(
        pg_pool, alert=STRAY, total=len(to), states=["submitted", "delivered"], timeout=30
    )
    sim = sims.by_name["orange"]
    # The SMSC's receipts that name no message are answered with an error once dropped.
    await sim.wait_for(lambda: sum(sim.receipts_refused.values()) >= 1, timeout=30)

    assert unmatched("orange") - before >= 1
    left = await pg_pool.fetchval(
        "SELECT count(*) FROM sms_messages WHERE alert = $1 AND state = 'submitted'", STRAY
    )
    assert left >= 1
    dropped = [r.getMessage() for r in caplog.records if "found no message" in r.getMessage()]
    assert dropped
    assert all("operator orange" in line for line in dropped)


def test_an_unknown_id_format_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(
        '[operators.orange]\nbinds = [{ host = "127.0.0.1", port = 2775,'
        ' receipt_id_format = "octal" }]\n',
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match=r"operators\.orange\.binds\[0\]\.receipt_id_format"):
        load_settings(Settings, operators_file=path, **STORES)

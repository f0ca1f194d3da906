"""The operators' command line, run as its own process against the service."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from services.alerting.model import Channel
from services.alerting.ports import Sent
from tests.services.alerting.conftest import AUDIT_KEY, PASSWORD, TERRITORY, ZONE_INSIDE, Harness


async def cli(*args: str, **env: str) -> tuple[int, str]:
    """Run `python -m services.alerting.cli ARGS`; exit status and output."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
    # The harness serves plaintext; tests/security drives a TLS alerting.
    environ.update(
        env, COLUMNS="200", TOCSIN_INSECURE_DEV="true", TOCSIN_AUDIT_KEY=AUDIT_KEY.decode()
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.alerting.cli",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def test_bootstrap_admin_is_refused_once_an_admin_exists(
    harness: Harness, pg_dsn: str
) -> None:
    code, out = await cli(
        "bootstrap-admin",
        "--username",
        "second",
        "--database-url",
        pg_dsn,
        TOCSIN_NEW_PASSWORD=PASSWORD,
    )
    assert code == 1
    assert "an admin exists already" in out


async def test_cli_manages_entities_and_verifies_the_audit_chain(
    harness: Harness, pg_dsn: str, tmp_path: Path
) -> None:
    territory = tmp_path / "gent.geojson"
    territory.write_text(TERRITORY)
    login = {"TOCSIN_USER": "admin", "TOCSIN_PASSWORD": PASSWORD}
    base = ("--target", harness.target)
    code, out = await cli(
        *base,
        "entity",
        "create",
        "--name",
        "Stad Gent",
        "--territory-kind",
        "municipality",
        "--territory",
        str(territory),
        **login,
    )
    assert code == 0, out
    assert "Stad Gent" in out
    code, out = await cli(*base, "package", "--entity", "1", "--units", "50000", **login)
    assert code == 0, out
    assert "50,000 prepaid units" in out
    code, out = await cli(*base, "usage", "--entity", "1", **login)
    assert code == 0, out
    assert "EUR 3,738.88" in out  # 200 + 788.88 + 2,750
    code, out = await cli(*base, "audit-verify", **login)
    assert code == 0, out
    assert "audit chain intact" in out
    code, out = await cli("audit-verify", "--offline", "--database-url", pg_dsn)
    assert code == 0, out
    code, out = await cli(
        *base, "entity", "list", TOCSIN_USER="admin", TOCSIN_PASSWORD="wrong one!!"
    )
    assert code == 1
    assert "UNAUTHENTICATED" in out


async def test_cli_sends_a_test_alert_and_watches_it_to_the_end(
    harness: Harness, tmp_path: Path
) -> None:
    gent = await harness.entity("Stad Gent", postpaid=True)
    await harness.issuer(gent.id, "mayor.gent")
    zone = tmp_path / "rabot.geojson"
    zone.write_text(ZONE_INSIDE)
    harness.deliveries.default = {Channel.SMS: Sent(submitted=15, delivered=15, units=15)}
    code, out = await cli(
        "--target",
        harness.target,
        "test-alert",
        "--zone",
        str(zone),
        "--channel",
        "sms",
        "--language",
        "nl",
        "--language",
        "fr",
        TOCSIN_USER="mayor.gent",
        TOCSIN_PASSWORD=PASSWORD,
    )
    assert code == 0, out
    assert "estimated 15 units" in out
    assert "complete, 15 units charged" in out
    texts = harness.targeting.resolved[0].kwargs["texts"]
    assert texts["nl"].startswith("TEST - ")

"""The e-mail service end to end: stream -> transactions of at most 100 -> relay -> outcomes."""

from __future__ import annotations

import asyncio
import base64
import email
import os
import signal
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import asyncpg
import dkim  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2
from tocsin.email.v1 import email_pb2

from services.kernel import keys as kernel_keys
from simulators.smtp import RelaySimulator
from stack.embedded import free_port
from tests.services.email.conftest import (
    ALERT,
    Inbox,
    Relay,
    StartEmail,
    add_work,
    addresses,
    email_values,
    states,
)
from tests.services.kernel.conftest import ServiceProcess, watch_until

#: Settings the process gets otherwise (stores, ports, TLS mode from service_env) or not at all.
PASSED_ELSEWHERE = frozenset(
    {"database_url", "redis_url", "grpc_port", "metrics_port", "log_level", "insecure_dev"}
)


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


async def test_per_recipient_answers_bounces_and_transactions_of_at_most_100(
    relay: Relay, start_email: StartEmail, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    bounce_port = free_port()
    # The relay bounces to the service's own bounce receiver, as the Internet would.
    sim: RelaySimulator = await relay(
        permanent_pattern="^nobody",
        temporary_pattern="^busy",
        temporary_times=2,
        bounce_pattern="^gone",
        bounce_to=f"127.0.0.1:{bounce_port}",
    )
    service = await start_email(sim.port, bounce_port=bounce_port)
    plain = addresses(230)
    odd = ["nobody1@example.org", "busy1@example.org", "gone1@example.org", "gone2@example.org"]
    await add_work(
        redis_client,
        to=[(a, "fr") for a in plain[:200]]
        + [(a, "nl") for a in plain[200:]]
        + [(a, "en") for a in odd],
    )
    await states(pg_pool, total=234, wanted=["delivered", "failed"])
    counts = await states(pg_pool, total=3, wanted=["failed"])
    assert counts == {"delivered": 231, "failed": 3}
    assert sim.largest_transaction <= 100
    assert sim.transactions >= 4  # 200 French in two or more, 30 Dutch, the English apart
    assert set(sim.received) == set(plain) | {
        "busy1@example.org",
        "gone1@example.org",
        "gone2@example.org",
    }
    assert sim.refused_temporary["busy1@example.org"] == 2
    errors: dict[str, str] = {
        r["address"]: r["error"]
        for r in await pg_pool.fetch(
            "SELECT address, error FROM email_messages WHERE state = 'failed'"
        )
    }
    assert errors["nobody1@example.org"].startswith("550")
    assert errors["gone1@example.org"].startswith("bounced 5.1.1")
    # The worker moved the channel's progress counters, which alerting reads (WatchAlert).
    counters = {
        r["state"]: r["n"]
        for r in await pg_pool.fetch(
            "SELECT state, sum(recipients)::int AS n FROM channel_progress"
            " WHERE alert = $1 AND channel = 'email' AND recipients > 0 GROUP BY state",
            ALERT,
        )
    }
    assert counters == {"delivered": 231, "failed": 3}
    progress = await service.progress()
    assert progress == {
        email_pb2.STATE_ACCEPTED: 231,
        email_pb2.STATE_BOUNCED: 2,
        email_pb2.STATE_FAILED: 1,
    }
    # One message per alert version and language: every French recipient got the same bytes.
    french = {sim.messages[a][0] for a in plain[:200]}
    assert len(french) == 1
    msg = _parse(french.pop())
    assert msg["Subject"] == "Évacuez le quartier de Jambes. Montez à l'étage."
    assert msg["Content-Language"] == "fr"
    assert msg["Message-ID"] == f"<tocsin.{ALERT}.1.fr@be-alert.test>"
    assert msg["Auto-Submitted"] == "auto-generated"
    plain_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    assert plain_part is not None
    assert html_part is not None
    assert "Évacuez le quartier de Jambes" in plain_part.get_content()
    assert "Évacuez le quartier de Jambes" in html_part.get_content()


async def test_against_aiosmtpd_with_dkim_that_verifies(
    inbox: tuple[Inbox, int],
    start_email: StartEmail,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    handler, port = inbox
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    records = {
        b"alerts._domainkey.be-alert.test.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    }
    await start_email(
        port,
        dkim_domain="be-alert.test",
        dkim_selector="alerts",
        dkim_key_file=str(tmp_path / "dkim.pem"),
    )
    to = addresses(150, prefix="inwoner")
    await add_work(redis_client, to=[(a, "nl") for a in to], kind="exercise")
    await states(pg_pool, total=150, wanted=["delivered"])
    assert set(handler.received) == set(to)
    assert set(handler.received.values()) == {1}
    assert len(handler.messages) == 2  # 150 recipients: two transactions
    for message in handler.messages:
        raw = message.as_bytes()
        # aiosmtpd adds X-Peer, X-MailFrom, X-RcptTo on top: the signed part is untouched.
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: records.get(name))
        parsed = _parse(raw)
        assert parsed["Subject"] == "Verlaat de wijk. Ga naar boven."
        assert parsed["X-MailFrom"].startswith("bounces+")


async def test_a_relay_dropping_mid_transaction_loses_nobody(
    relay: Relay, start_email: StartEmail, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sim: RelaySimulator = await relay(drop_every=3)
    await start_email(sim.port)
    to = addresses(600)
    await add_work(redis_client, to=[(a, "en") for a in to])
    await states(pg_pool, total=600, wanted=["delivered"])
    assert set(sim.received) == set(to)
    assert sim.drops >= 1
    duplicates = sum(n - 1 for n in sim.received.values())
    # Only a dropped transaction's recipients may come twice.
    assert duplicates <= sim.drops * 100


async def test_cancel_stops_what_was_not_handed_to_the_relay(
    relay: Relay, start_email: StartEmail, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sim: RelaySimulator = await relay(delay_s=0.02)
    await start_email(sim.port, smtp_connections=1)
    to = addresses(3000)
    await add_work(redis_client, to=[(a, "en") for a in to])
    await asyncio.wait_for(sim.wait_received(1), timeout=30)
    await redis_client.set(kernel_keys.alert_cancelled(ALERT), "1")
    counts = await states(pg_pool, total=3000, wanted=["delivered", "cancelled"])
    assert counts["cancelled"] > 0
    assert counts["delivered"] == sum(sim.received.values())
    assert counts["delivered"] < 3000


async def test_kill_9_mid_send_leaves_nobody_out_and_duplicates_within_the_window(
    relay: Relay,
    processes: Any,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
    pg_dsn: str,
    redis_url: str,
) -> None:
    sim: RelaySimulator = await relay(delay_s=0.002)

    def start() -> ServiceProcess:
        values = email_values(pg_dsn, redis_url, sim.port)
        env = {
            f"TOCSIN_{k.upper()}": str(v) for k, v in values.items() if k not in PASSED_ELSEWHERE
        }
        started: ServiceProcess = processes(
            "services.email", DATABASE_URL=pg_dsn, REDIS_URL=redis_url, **env
        )
        return started

    first = start()
    await watch_until(first.target, health_pb2.HealthCheckResponse.SERVING)
    total = 3000
    to = addresses(total)
    await add_work(redis_client, to=[(a, "en") for a in to])
    await asyncio.wait_for(sim.wait_received(total // 5), timeout=60)
    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait(10)
    sent_before = sum(sim.received.values())
    assert sent_before < total, "the kill came after everything was sent"
    second = start()
    await watch_until(second.target, health_pb2.HealthCheckResponse.SERVING)
    counts = await states(
        pg_pool,
        total=total,
        wanted=["delivered"],
    )
    assert counts == {"delivered": total}
    assert set(sim.received) == set(to)
    duplicates = sum(n - 1 for n in sim.received.values())
    # At most the durability window of the killed process: connections x batch x 2.
    assert duplicates <= 2 * 100 * 2

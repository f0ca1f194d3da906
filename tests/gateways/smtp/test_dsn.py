"""Bounces: tagged return paths, RFC 3464 reports parsed, the receiver hands them over."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import aiosmtplib
import pytest

from gateways.smtp import (
    Bounce,
    BounceReceiver,
    Content,
    RelayConfig,
    SmtpPool,
    compose,
    dsn,
    tag_of,
    tagged_address,
)
from simulators.smtp.server import dsn as simulated_dsn
from simulators.smtp.server import send_dsn
from tests.gateways.smtp.conftest import RelayFactory

POSTFIX_DSN = b"""\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: bounces+a1.2.fr.7@be-alert.test
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Thu,  3 Dec 2026 15:00:00 +0100 (CET)

Final-Recipient: rfc822; jan@example.org
Original-Recipient: rfc822;jan@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <jan@example.org>: Recipient address rejected

Final-Recipient: rfc822; piet@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx: Connection timed out

--B1--
"""


def test_tagged_addresses_round_trip() -> None:
    address = tagged_address(local="bounces", tag="a1.2.fr.7", domain="be-alert.test")
    assert address == "bounces+a1.2.fr.7@be-alert.test"
    assert tag_of(address) == "a1.2.fr.7"
    assert tag_of("<" + address + ">") == "a1.2.fr.7"
    assert tag_of("bounces@be-alert.test") is None
    with pytest.raises(ValueError, match="tag"):
        tagged_address(local="bounces", tag="a b", domain="x.test")


def test_a_postfix_style_report_gives_one_bounce_per_recipient() -> None:
    bounces = dsn.parse(POSTFIX_DSN.replace(b"\n", b"\r\n"))
    assert bounces == [
        Bounce(
            "jan@example.org",
            "failed",
            "5.1.1",
            "550 5.1.1 <jan@example.org>: Recipient address rejected",
        ),
        Bounce("piet@example.org", "delayed", "4.4.1", "connect to mx: Connection timed out"),
    ]
    assert bounces[0].permanent
    assert not bounces[1].permanent


def test_what_is_not_a_report_gives_nothing() -> None:
    reply = compose(
        Content(
            from_name="Jan",
            from_address="jan@example.org",
            subject="Out of office",
            text="I am away.",
            language="en",
            message_id="<x@example.org>",
            date=datetime(2026, 12, 3, tzinfo=UTC),
        )
    )
    assert dsn.parse(reply) == []
    assert dsn.parse(b"garbage\r\n\r\n") == []


async def test_the_receiver_hands_over_reports_and_answers_451_when_recording_fails() -> None:
    got: list[tuple[list[str], list[Bounce]]] = []
    fail = True

    async def record(tags: Sequence[str], bounces: Sequence[Bounce]) -> None:
        if fail:
            raise RuntimeError("database down")
        got.append((list(tags), list(bounces)))

    receiver = BounceReceiver(on_bounces=record)
    port = await receiver.start()
    report = simulated_dsn(
        reporting="mx.test",
        envelope_from="bounces+t42@be-alert.test",
        recipient="marie@example.org",
        status="5.1.1",
        text="no such user",
    )
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send_dsn(report, to="bounces+t42@be-alert.test", host="127.0.0.1", port=port)
        assert refused.value.code == 451
        fail = False
        await send_dsn(report, to="bounces+t42@be-alert.test", host="127.0.0.1", port=port)
    finally:
        await receiver.stop()
    assert got == [(["t42"], [Bounce("marie@example.org", "failed", "5.1.1", "550 no such user")])]


async def test_the_relay_bounces_to_the_receiver_by_the_transaction_tag(
    relay: RelayFactory,
) -> None:
    got: asyncio.Queue[tuple[list[str], list[Bounce]]] = asyncio.Queue()

    async def record(tags: Sequence[str], bounces: Sequence[Bounce]) -> None:
        await got.put((list(tags), list(bounces)))

    receiver = BounceReceiver(on_bounces=record)
    bounce_port = await receiver.start()
    sim = await relay(bounce_pattern="^gone@", bounce_to=f"127.0.0.1:{bounce_port}")
    pool = SmtpPool(RelayConfig(host="127.0.0.1", port=sim.port, tls="none", connections=1))
    message = compose(
        Content(
            from_name="BE-Alert",
            from_address="alert@be-alert.test",
            subject="s",
            text="t",
            language="en",
            message_id="<m@be-alert.test>",
            date=datetime(2026, 12, 3, tzinfo=UTC),
        )
    )
    try:
        await pool.send(
            envelope_from=tagged_address(local="bounces", tag="tx7", domain="be-alert.test"),
            recipients=["ok@example.org", "gone@example.org"],
            message=message,
        )
        tags, bounces = await asyncio.wait_for(got.get(), timeout=10)
    finally:
        await pool.close()
        await receiver.stop()
    assert tags == ["tx7"]
    assert [(b.recipient, b.permanent) for b in bounces] == [("gone@example.org", True)]

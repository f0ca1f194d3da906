"""A real alert's e-mail: subject and paragraphs from the CAP document alerting stored, and its
outcome in the counters alerting reads."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

import asyncpg
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting import counters
from services.alerting.model import Channel
from services.alerting.ports import Sent
from services.email.letters import Letters
from tests.services.alerting.conftest import Harness, harness, spec
from tests.services.alerting.test_lifecycle import create, mayor, send
from tests.services.email.conftest import Relay, StartEmail, add_work, states

__all__ = ["harness"]


async def test_an_exercise_mail_has_the_marked_cap_headline_as_subject(
    harness: Harness,
    relay: Relay,
    start_email: StartEmail,
    redis_client: aioredis.Redis,
    pg_pool: asyncpg.Pool,
) -> None:
    _, client = await mayor(harness)
    alert = await create(client, spec(kind=pb.ALERT_KIND_EXERCISE, languages=("nl", "fr")))
    await send(client, alert.id)
    letters = Letters(pg_pool)
    french = await letters.letter(alert=alert.id, version=1, language="fr", text="fallback")
    assert french.subject == "EXERCICE - Chemische wolk boven Gent (fr)"
    assert "Stay inside, close doors and windows." in french.text
    assert "(Gent - Rabot)" in french.text
    # Version 2 has no document yet: the stream's text.
    assert (await letters.letter(alert=alert.id, version=2, language="fr", text="t")).subject == "t"

    sim = await relay()
    await start_email(sim.port)
    await add_work(
        redis_client,
        alert=alert.id,
        to=[("marie@example.org", "fr"), ("jan@example.org", "nl")],
        kind="exercise",
    )
    await states(pg_pool, alert=alert.id, total=2, wanted=["delivered"])
    (raw,) = sim.messages["jan@example.org"]
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == "OEFENING - Chemische wolk boven Gent (nl)"
    # What alerting's WatchAlert and settler read: e-mail delivered, free.
    assert await counters.sent(pg_pool, alert_id=alert.id) == {
        Channel.EMAIL: Sent(submitted=2, delivered=2, failed=0, dropped=0, units=0)
    }

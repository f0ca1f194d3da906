"""One count of communication units: what a preview says, what the ledger charges and what the
SMPP gateway really sends agree, for the texts where naive counting goes wrong."""

from __future__ import annotations

import math
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateways.smpp import encode_text, segment_count
from services.channel import codec, keys
from services.channel.units import Units, cost_cents, price
from tests.services.channel import work
from tests.services.sms.conftest import StartSms, StartSmscs

#: A text per language, each hard in its own way.
HARD = {
    # Euro signs: two septets each (escape + code), 80 of them fill exactly one segment.
    "nl": "€" * 80,
    # An escaped bracket straddling the 153rd septet: the gateway moves it whole to segment 2,
    # and a third segment follows where a count of septets / 153 says two.
    "fr": "a" * 152 + "[" + "b" * 152,
    # A French curly apostrophe: the whole text goes UCS-2 (70 / 67 units), not GSM.
    "de": "Restez à l\u2019intérieur, fermez portes et fenêtres. " * 2,
    # An emoji (a surrogate pair: two UCS-2 units) at the 67-unit boundary is never cut.
    "en": "x" * 66 + "🚨" + "y" * 66,
}
ALERT = "0a1e0000-0000-4000-8000-0000000000a1"


def naive_segments(text: str) -> int:
    """The count the services used to make: characters or septets over 153 / 67."""
    gsm = all(ord(c) < 0x2000 and c not in "\u2019🚨" for c in text)
    n = (
        sum(2 if c in "€[]{}\\^~|" else 1 for c in text)
        if gsm
        else len(text.encode("utf-16-le")) // 2
    )
    single, split = (160, 153) if gsm else (70, 67)
    return 1 if n <= single else math.ceil(n / split)


@pytest.mark.parametrize("language", sorted(HARD))
def test_the_units_of_a_text_are_the_segments_the_gateway_sends(language: str) -> None:
    text = HARD[language]
    assert Units(segment_count).sms(text) == len(encode_text(text, reference=1).parts)


def test_naive_counting_differs_where_it_mattered() -> None:
    units = Units(segment_count)
    assert [naive_segments(HARD[k]) for k in ("fr", "en")] == [2, 2]
    assert [units.sms(HARD[k]) for k in ("fr", "en")] == [3, 3]


def test_the_price_is_exact() -> None:
    assert str(price(3)) == "0.165"
    assert cost_cents(1) == 6  # 5.5 cents, half up
    assert cost_cents(2) == 11


async def test_preview_units_equal_charged_units_equal_segments_sent(
    smscs: StartSmscs, start_sms: StartSms, redis_client: aioredis.Redis, pg_pool: asyncpg.Pool
) -> None:
    sims = await smscs(("opA",))
    await start_sms(sims, smsc=sims.spec, routes="opA=32")
    per_language = {lang: [f"+3247{i}{j:05d}" for j in range(5)] for i, lang in enumerate(HARD)}
    header = codec.Header(ALERT, 1, "test", time.time() + 600, "BE-Alert", HARD)
    to = [(number, lang) for lang, numbers in per_language.items() for number in numbers]
    await redis_client.xadd(keys.stream("sms"), codec.encode(codec.WorkEntry(header, to, "1")))  # type: ignore[arg-type]

    await work.wait_states(pg_pool, channel="sms", alert=ALERT, total=len(to), states=["delivered"])

    preview = Units(segment_count).audience(
        {("sms", lang): len(numbers) for lang, numbers in per_language.items()}, HARD
    )
    charged = sum(u for _, u in (await work.counters(pg_pool, channel="sms", alert=ALERT)).values())
    sent = sum(sims.by_name["opA"].segments.values())
    assert preview == charged == sent
    assert preview == 5 * sum(segment_count(t) for t in HARD.values())

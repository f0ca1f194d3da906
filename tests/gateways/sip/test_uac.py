"""The UAC against the trunk simulator: every answer sorted, timers, CANCEL, auth, 503, RTP."""

from __future__ import annotations

import asyncio

import pytest

from gateways.sip import CallOutcome, Credentials, Prompt, SipUac
from tests.gateways.sip.conftest import Factory, trunk_of


async def test_answered_call_hears_the_message_twice_then_bye(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(keep_audio=True)
    answered: list[bool] = []
    result = await uac.call(
        trunk=trunk_of(sim),
        number="+3250000001",
        prompt=prompt,
        ring_timeout=5,
        on_answer=lambda: answered.append(True),
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.status == 200
    assert answered == [True]
    assert result.heard_fully
    assert result.bye_answered
    assert result.frames_total == 2 * len(prompt.pcma)
    record = sim.records[0]
    assert record.ended
    assert record.acked
    assert record.frames == result.frames_total
    assert (record.seq_errors, record.ts_errors, record.ssrc_changes) == (0, 0, 0)
    assert record.payload_type == 8
    assert bytes(record.audio) == b"".join(prompt.pcma) * 2
    assert sim.destinations["+3250000001"].answered == 1
    assert sim.active == 0


@pytest.mark.parametrize(
    ("script", "outcome", "status"),
    [
        ("busy", CallOutcome.BUSY, 486),
        ("reject", CallOutcome.REJECTED, 404),
        ("unavailable", CallOutcome.TRUNK_TROUBLE, 503),
    ],
)
async def test_failures_are_sorted(
    uac: SipUac,
    prompt: Prompt,
    trunk_factory: Factory,
    script: str,
    outcome: CallOutcome,
    status: int,
) -> None:
    sim = await trunk_factory(scripts={"+3250000002": (script,)}, retry_after=0)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000002", prompt=prompt, ring_timeout=5
    )
    assert (result.outcome, result.status) == (outcome, status)
    assert sim.records[0].answered is False


async def test_ring_timeout_sends_cancel(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(scripts={"+3250000003": ("no_answer",)})
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000003", prompt=prompt, ring_timeout=0.3
    )
    assert result.outcome is CallOutcome.NO_ANSWER
    assert result.status == 487
    assert sim.cancels == 1
    assert sim.records[0].outcome == "cancelled"
    assert sim.active == 0


async def test_abandon_while_ringing_cancels_and_plays_nothing(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(scripts={"+3250000004": ("no_answer",)})
    abandon = asyncio.Event()
    call = asyncio.create_task(
        uac.call(
            trunk=trunk_of(sim),
            number="+3250000004",
            prompt=prompt,
            ring_timeout=30,
            abandon=abandon,
        )
    )
    await sim.wait_until(lambda: sim.active == 1 and sim.records[0].outcome == "no_answer")
    abandon.set()
    result = await call
    assert result.outcome is CallOutcome.ABANDONED
    assert sim.cancels == 1
    assert sim.records[0].frames == 0


async def test_abandon_after_answer_does_not_cut_the_message(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory()
    abandon = asyncio.Event()
    result = await uac.call(
        trunk=trunk_of(sim),
        number="+3250000005",
        prompt=prompt,
        ring_timeout=5,
        abandon=abandon,
        on_answer=abandon.set,
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.heard_fully


async def test_lost_invite_is_retransmitted(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(drop_invites=2)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000006", prompt=prompt, ring_timeout=5
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert sim.invites == 3
    assert uac.stats.retransmissions >= 2
    assert len(sim.records) == 1


async def test_silent_trunk_ends_on_timer_b(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory()
    sim.gone = True
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000007", prompt=prompt, ring_timeout=60
    )
    assert (result.outcome, result.status) == (CallOutcome.TRUNK_TROUBLE, 0)
    assert uac.stats.retransmissions == 6  # timer A: T1, 2T1 .. 32T1, then timer B at 64T1
    assert sim.invites == 0


async def test_trunk_gone_mid_call_ends_the_call(uac: SipUac, trunk_factory: Factory) -> None:
    from tests.gateways.sip.conftest import tone_prompt

    sim = await trunk_factory()
    long_prompt = tone_prompt(1.0)
    call = asyncio.create_task(
        uac.call(trunk=trunk_of(sim), number="+3250000008", prompt=long_prompt, ring_timeout=5)
    )
    await sim.wait_until(lambda: bool(sim.records) and sim.records[0].frames >= 10)
    sim.gone = True
    result = await call
    assert result.outcome is CallOutcome.ANSWERED
    assert result.bye_answered is False
    assert sim.records[0].frames < result.frames_total
    sim.gone = False
    again = await uac.call(
        trunk=trunk_of(sim), number="+3250000009", prompt=long_prompt, ring_timeout=5
    )
    assert again.outcome is CallOutcome.ANSWERED
    assert again.bye_answered


async def test_digest_authentication(uac: SipUac, prompt: Prompt, trunk_factory: Factory) -> None:
    sim = await trunk_factory(username="tocsin", password="s3cret")
    good = trunk_of(sim, credentials=Credentials("tocsin", "s3cret"))
    result = await uac.call(trunk=good, number="+3250000010", prompt=prompt, ring_timeout=5)
    assert result.outcome is CallOutcome.ANSWERED
    bad = trunk_of(sim, credentials=Credentials("tocsin", "wrong"))
    refused = await uac.call(trunk=bad, number="+3250000011", prompt=prompt, ring_timeout=5)
    assert (refused.outcome, refused.status) == (CallOutcome.REJECTED, 401)


async def test_retry_after_holds_back_the_next_invite(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(scripts={"+3250000012": ("unavailable",)}, retry_after=1)
    first = await uac.call(trunk=trunk_of(sim), number="+3250000012", prompt=prompt, ring_timeout=5)
    assert first.retry_after == 1.0
    loop = asyncio.get_running_loop()
    before = loop.time()
    second = await uac.call(
        trunk=trunk_of(sim), number="+3250000013", prompt=prompt, ring_timeout=5
    )
    assert second.outcome is CallOutcome.ANSWERED
    assert loop.time() - before >= 0.9


async def test_garbage_from_the_trunk_is_ignored(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(garbage=True)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000014", prompt=prompt, ring_timeout=5
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.heard_fully
    assert uac.stats.parse_errors >= 3


async def test_channel_limit_answers_503(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(channels=1, retry_after=0)
    results = await asyncio.gather(
        *(
            uac.call(trunk=trunk_of(sim), number=f"+32500001{i:02d}", prompt=prompt, ring_timeout=5)
            for i in range(3)
        )
    )
    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count(CallOutcome.ANSWERED) == 1
    assert outcomes.count(CallOutcome.TRUNK_TROUBLE) == 2
    assert sim.max_active == 1

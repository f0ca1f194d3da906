"""The UAC against the trunk simulator: 3xx redirects followed (bounded), reliable 183s PRACKed."""

from __future__ import annotations

from gateways.sip import CallOutcome, Prompt, SipUac
from gateways.sip.uac import MAX_REDIRECTS
from tests.gateways.sip.conftest import Factory, trunk_of


async def test_a_redirect_is_followed_to_its_contact_through_the_trunk(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(redirects={"+3250000201": "+3250000299"}, keep_audio=True)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000201", prompt=prompt, ring_timeout=5
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.heard_fully
    assert result.redirected_to == f"sip:+3250000299@127.0.0.1:{sim.port}"
    assert [(r.number, r.outcome) for r in sim.records] == [
        ("+3250000201", "redirected"),
        ("+3250000299", "answer"),
    ]
    assert sim.records[0].call_id == sim.records[1].call_id  # one call, two INVITEs
    assert sim.destinations["+3250000299"].answered == 1
    assert bytes(sim.records[1].audio) == b"".join(prompt.pcma) * 2
    assert uac.stats.redirects == 1


async def test_a_redirect_loop_ends_as_a_rejection_after_a_few_hops(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    loop = {"+3250000202": "+3250000203", "+3250000203": "+3250000202"}
    sim = await trunk_factory(redirects=loop)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000202", prompt=prompt, ring_timeout=5
    )
    assert (result.outcome, result.status) == (CallOutcome.REJECTED, 302)
    assert sim.redirects == MAX_REDIRECTS + 1
    assert not any(r.answered for r in sim.records)


async def test_a_reliable_183_is_pracked_and_the_call_goes_on(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(reliable=True, keep_audio=True)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000204", prompt=prompt, ring_timeout=5
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.pracks == 1
    assert result.heard_fully
    assert result.bye_answered
    record = sim.records[0]
    assert record.pracked
    assert bytes(record.audio) == b"".join(prompt.pcma) * 2
    assert uac.stats.pracks == 1


async def test_a_lost_prack_is_resent_and_the_resent_183_not_pracked_again(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    # The first PRACK is lost: the trunk resends its 183 (same RSeq), our PRACK transaction
    # resends the PRACK on its timer; the repeated 183 draws no second PRACK of its own.
    sim = await trunk_factory(reliable=True, drop_pracks=1, ring_delay=0.6)
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000205", prompt=prompt, ring_timeout=5
    )
    assert result.outcome is CallOutcome.ANSWERED
    assert result.pracks == 1
    assert sim.records[0].pracked
    assert sim.pracks >= 2
    assert uac.stats.retransmissions >= 1


async def test_a_reliable_ring_without_answer_is_cancelled(
    uac: SipUac, prompt: Prompt, trunk_factory: Factory
) -> None:
    sim = await trunk_factory(reliable=True, scripts={"+3250000206": ("no_answer",)})
    result = await uac.call(
        trunk=trunk_of(sim), number="+3250000206", prompt=prompt, ring_timeout=0.5
    )
    assert (result.outcome, result.status) == (CallOutcome.NO_ANSWER, 487)
    assert result.pracks == 1
    assert sim.records[0].pracked
    assert sim.cancels == 1

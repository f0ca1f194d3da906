"""The UAC against SIPp (Debian's `sip-tester`), an independent SIP implementation, as answerer.

`make test` installs sip-tester where it can (mk/voice.mk); elsewhere these tests skip and say so.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateways.sip import CallOutcome, Prompt, SipUac, Trunk

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).parent / "sipp"

pytestmark = pytest.mark.skipif(
    SIPP is None,
    reason="SIPp not installed: `make pytest` installs Debian's sip-tester when run as root with "
    "apt reachable; here it could not, so the SIPp interoperability tests are skipped",
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def sipp(scenario: str) -> AsyncIterator[tuple[Trunk, Callable[[], asyncio.Future[int]]]]:
    """SIPp answering one call with `scenario`; yields the trunk and a waiter for its exit code."""
    assert SIPP is not None
    port, media = _free_udp_port(), _free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf",
        str(SCENARIOS / f"{scenario}.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(media),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    def finished() -> asyncio.Future[int]:
        return asyncio.ensure_future(proc.wait())

    try:
        yield Trunk(host="127.0.0.1", port=port), finished
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sipp_answers_and_hears_the_message(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("answer") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000101", prompt=prompt, ring_timeout=10)
        assert result.outcome is CallOutcome.ANSWERED
        assert result.heard_fully
        assert result.bye_answered
        assert await finished() == 0


async def test_sipp_busy(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("busy") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000102", prompt=prompt, ring_timeout=10)
        assert (result.outcome, result.status) == (CallOutcome.BUSY, 486)
        assert await finished() == 0


async def test_sipp_no_answer_forces_cancel(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("noanswer") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000103", prompt=prompt, ring_timeout=0.5)
        assert (result.outcome, result.status) == (CallOutcome.NO_ANSWER, 487)
        assert await finished() == 0


async def test_sipp_unavailable_with_retry_after(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("unavailable") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000104", prompt=prompt, ring_timeout=10)
        assert (result.outcome, result.status) == (CallOutcome.TRUNK_TROUBLE, 503)
        assert result.retry_after == 1.0
        assert await finished() == 0


async def test_sipp_reliable_183_is_pracked(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("prack") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000105", prompt=prompt, ring_timeout=10)
        assert result.outcome is CallOutcome.ANSWERED
        assert result.pracks == 1
        assert result.heard_fully
        assert result.bye_answered
        assert await finished() == 0


async def test_sipp_redirect_is_followed(uac: SipUac, prompt: Prompt) -> None:
    async with sipp("redirect") as (trunk, finished):
        result = await uac.call(trunk=trunk, number="+3250000106", prompt=prompt, ring_timeout=10)
        assert result.outcome is CallOutcome.ANSWERED
        assert result.redirected_to.startswith("sip:forwarded@127.0.0.1:")
        assert result.heard_fully
        assert await finished() == 0

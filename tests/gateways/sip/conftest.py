"""Fixtures of the SIP gateway tests: a media clock, a UAC with short timers, a short prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from gateways.sip import MediaClock, Prompt, SipUac, Timers, Trunk
from gateways.tts.espeak import render_prompt
from simulators.siptrunk import SipTrunkSimulator, TrunkConfig

#: Short timers so that retransmission and timeouts run in a fraction of a second.
FAST = Timers(t1=0.05, t2=0.4)


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    """One media clock, as a process has."""
    c = await MediaClock.open()
    yield c
    await c.close()


@pytest.fixture
async def uac(clock: MediaClock) -> AsyncIterator[SipUac]:
    """A UAC on a free loopback port with fast timers."""
    u = await SipUac.open(clock=clock, timers=FAST)
    yield u
    u.close()


def tone_prompt(seconds: float = 0.2) -> Prompt:
    """A 440 Hz tone of `seconds` (no pause), so a call lasts a known number of frames."""
    t = np.arange(int(seconds * 8000)) / 8000
    return render_prompt((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), pause_s=0.0)


@pytest.fixture
def prompt() -> Prompt:
    """Ten frames of tone."""
    return tone_prompt()


Factory = Callable[..., Coroutine[Any, Any, SipTrunkSimulator]]


@pytest.fixture
async def trunk_factory() -> AsyncIterator[Factory]:
    """Start simulated trunks with a given configuration; stopped at the end."""
    started: list[SipTrunkSimulator] = []

    async def start(**kwargs: Any) -> SipTrunkSimulator:
        sim = SipTrunkSimulator(TrunkConfig(t1=0.05, **kwargs))
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


def trunk_of(sim: SipTrunkSimulator, **kwargs: Any) -> Trunk:
    """The simulated trunk as the UAC sees it."""
    return Trunk(host="127.0.0.1", port=sim.port, **kwargs)

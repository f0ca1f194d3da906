"""Offline speech: every language speaks, and a call carries the synthesised message intact."""

from __future__ import annotations

import numpy as np
import pytest

from gateways.sip import CallOutcome, MediaClock, SipUac, Trunk, g711
from gateways.tts import LANGUAGES, Espeak, TtsError, render_prompt
from gateways.tts.espeak import RATE_HZ, resample
from simulators.siptrunk import SipTrunkSimulator, TrunkConfig
from tests.gateways.sip.conftest import FAST

TEXTS = {
    "nl": "Dit is een test van BE-Alert. Blijf binnen en sluit ramen en deuren.",
    "fr": "Ceci est un test de BE-Alert. Restez à l'intérieur.",
    "de": "Dies ist ein Test von BE-Alert. Bleiben Sie drinnen.",
    "en": "This is a test of BE-Alert. Stay indoors and close windows and doors.",
}


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    return Espeak()


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_each_language_speaks(espeak: Espeak, language: str) -> None:
    samples = espeak.speak(text=TEXTS[language], language=language)
    seconds = samples.size / RATE_HZ
    assert 2.0 < seconds < 10.0
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 500


def test_unknown_language_is_named(espeak: Espeak) -> None:
    with pytest.raises(TtsError, match="language"):
        espeak.speak(text="hola", language="es")


def test_resample_keeps_a_tone_below_nyquist() -> None:
    t = np.arange(22050) / 22050
    tone = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    out = resample(tone, source_hz=22050, target_hz=8000)
    assert out.size == 8000
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    assert int(np.argmax(spectrum)) == 1000
    tone_hi = (10000 * np.sin(2 * np.pi * 6000 * t)).astype(np.int16)
    aliased = resample(tone_hi, source_hz=22050, target_hz=8000)[100:-100]  # past the edges
    assert np.abs(aliased).max() < 500


async def test_the_trunk_hears_the_synthesised_message_twice(espeak: Espeak) -> None:
    samples = espeak.speak(text=TEXTS["nl"], language="nl")
    prompt = render_prompt(samples, pause_s=0.2)
    sim = SipTrunkSimulator(TrunkConfig(keep_audio=True, t1=FAST.t1))
    await sim.start()
    clock = await MediaClock.open()
    uac = await SipUac.open(clock=clock, timers=FAST)
    try:
        result = await uac.call(
            trunk=Trunk(host="127.0.0.1", port=sim.port),
            number="+3250000201",
            prompt=prompt,
            ring_timeout=5,
        )
    finally:
        uac.close()
        await clock.close()
        await sim.stop()
    assert result.outcome is CallOutcome.ANSWERED
    assert result.heard_fully
    record = sim.records[0]
    assert (record.seq_errors, record.ts_errors, record.ssrc_changes) == (0, 0, 0)
    heard = g711.alaw_decode(bytes(record.audio)).astype(np.float64)
    once = heard.size // 2
    assert once == len(prompt.pcma) * 160
    assert abs(record.audio_seconds - 2 * once / RATE_HZ) < 1e-9
    spoken = samples.astype(np.float64)
    for half in (heard[:once], heard[once:]):
        part = half[: spoken.size]
        energy_ratio = float(np.sum(part**2) / np.sum(spoken**2))
        assert 0.98 < energy_ratio < 1.02
        assert float(np.corrcoef(part, spoken)[0, 1]) > 0.99
        assert float(np.abs(half[spoken.size :]).max(initial=0)) < 16  # the pause is silence

"""Our numpy G.711 against Python's own C implementation (audioop), bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateways.sip import g711

with warnings.catch_warnings():
    # audioop is deprecated in 3.11 and gone in 3.13; here it is only the reference to compare to.
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*audioop.*")
    import audioop

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_BYTES = bytes(range(256))


def test_encoders_match_the_reference_on_every_sample() -> None:
    raw = ALL_SAMPLES.tobytes()
    assert g711.alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(raw, 2)
    assert g711.ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(raw, 2)


def test_decoders_match_the_reference_on_every_byte() -> None:
    assert g711.alaw_decode(ALL_BYTES).tobytes() == audioop.alaw2lin(ALL_BYTES, 2)
    assert g711.ulaw_decode(ALL_BYTES).tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_round_trip_stays_within_one_quantisation_step(values: list[int]) -> None:
    samples = np.array(values, dtype=np.int16)
    for encode, decode in (
        (g711.alaw_encode, g711.alaw_decode),
        (g711.ulaw_encode, g711.ulaw_decode),
    ):
        back = decode(encode(samples)).astype(np.int32)
        error = np.abs(back - samples.astype(np.int32))
        assert bool(np.all(error <= np.abs(samples.astype(np.int32)) // 16 + 64))

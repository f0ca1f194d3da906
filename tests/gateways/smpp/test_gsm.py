"""GSM 03.38 codec and segmentation: round trips and unit counts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.smpp.gsm import (
    DATA_CODING_GSM,
    DATA_CODING_UCS2,
    ESM_UDHI,
    GSM_CHARS,
    _encoded_bodies,
    decode_payload,
    encode_text,
    gsm_decode,
    gsm_encode,
    is_gsm,
    segment_count,
    split_udh,
)

gsm_text = st.text(alphabet=st.sampled_from(sorted(GSM_CHARS)), max_size=800)
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=500)


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    assert gsm_decode(gsm_encode(text)) == text


def test_extension_table_uses_escape() -> None:
    assert gsm_encode("€[]{}") == bytes.fromhex("1b65 1b3c 1b3e 1b28 1b29".replace(" ", ""))
    assert gsm_encode("@£$§") == bytes([0x00, 0x01, 0x02, 0x5F])


def test_curly_apostrophe_is_not_gsm() -> None:
    assert not is_gsm("L\u2019alerte")
    with pytest.raises(UnicodeEncodeError):
        gsm_encode("L\u2019alerte")
    assert encode_text("L\u2019alerte", reference=1).data_coding == DATA_CODING_UCS2


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # 160 septets
        ("€" * 81, 2),
        ("é" * 70, 1),  # é is in the GSM basic table
        ("\u2019" * 70, 1),
        ("\u2019" * 71, 2),
        ("\u2019" * 134, 2),
        ("\u2019" * 135, 3),
    ],
)
def test_segment_count(text: str, units: int) -> None:
    assert segment_count(text) == units


def test_escape_sequence_never_split() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = encode_text(text, reference=7).parts
    assert len(parts) == 2
    assert parts[0][6:] == b"a" * 152
    assert parts[1][6:8] == b"\x1b\x65"


def _reassemble(text: str, reference: int) -> tuple[str, list[bytes]]:
    enc = encode_text(text, reference=reference)
    if len(enc.parts) == 1:
        assert enc.esm_class == 0
        return decode_payload(enc.data_coding, enc.parts[0]), enc.parts
    assert enc.esm_class == ESM_UDHI
    pieces = []
    for n, part in enumerate(enc.parts, start=1):
        concat, body = split_udh(part)
        assert concat is not None
        assert (concat.reference, concat.total, concat.number) == (
            reference & 0xFF,
            len(enc.parts),
            n,
        )
        pieces.append(decode_payload(enc.data_coding, body))
    return "".join(pieces), enc.parts


@given(st.one_of(gsm_text, any_text), st.integers(0, 255))
def test_segments_reassemble_and_match_unit_count(text: str, reference: int) -> None:
    back, parts = _reassemble(text, reference)
    assert back == text
    assert len(parts) == segment_count(text)
    gsm = is_gsm(text)
    coding = encode_text(text, reference=reference).data_coding
    assert coding == (DATA_CODING_GSM if gsm else DATA_CODING_UCS2)
    if len(parts) == 1:
        assert len(parts[0]) <= (160 if gsm else 140)
    else:
        for part in parts:
            assert len(part) - 6 <= (153 if gsm else 134)


@given(st.one_of(gsm_text, any_text), st.integers(0, 255), st.integers(0, 255))
def test_cached_encoding_equals_fresh_encoding(text: str, ref: int, other_ref: int) -> None:
    # The per-text cache must give the bytes a fresh encoding gives, whatever reference came first.
    encode_text(text, reference=other_ref)
    cached = encode_text(text, reference=ref)
    _encoded_bodies.cache_clear()
    fresh = encode_text(text, reference=ref)
    assert cached == fresh
    assert segment_count(text) == len(fresh.parts)

"""GSM 03.38 text: 7-bit default alphabet with its extension table, UCS-2 fallback, segmentation.

Texts are carried unpacked (one septet per octet, data_coding 0), which is what SMPP 3.4 SMSCs
expect for the default alphabet. A text that has any character outside the alphabet and its
extension table goes as UCS-2 (data_coding 8). Split texts carry a concatenation UDH
(IEI 0x00, 8-bit reference), so a segment holds 153 septets or 67 UCS-2 code units instead of
160 / 70. Segments never split an escape sequence or a surrogate pair.

smpplib.gsm.make_parts is not used: it cuts escape sequences across segments (its own FIXME),
maps 0x5F to a backquote instead of the section sign and draws a random reference number.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from telecom import gsm7

#: data_coding for the SMSC default alphabet (GSM 03.38, unpacked).
DATA_CODING_GSM = 0x00
#: data_coding for UCS-2 (UTF-16BE).
DATA_CODING_UCS2 = 0x08
#: esm_class bit: short_message starts with a user data header.
ESM_UDHI = 0x40

GSM_SINGLE_SEPTETS = 160
GSM_SEGMENT_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_SEGMENT_UNITS = 67
MAX_SEGMENTS = 255

_ENCODE: dict[str, bytes] = {ch: bytes([i]) for ch, i in gsm7.BASIC_CODE.items()}
_ENCODE.update({ch: bytes([gsm7.ESC, code]) for ch, code in gsm7.EXTENSION.items()})
_DECODE_BASIC: dict[int, str] = {i: ch for ch, i in gsm7.BASIC_CODE.items()}
#: Characters of the basic table and of the extension table (the escape itself excluded).
GSM_CHARS = frozenset(_ENCODE)


class GsmDecodeError(ValueError):
    """Bytes that are not valid unpacked GSM 03.38 septets."""


@dataclass(frozen=True, slots=True)
class EncodedText:
    """A text encoded for submit_sm: one short_message per segment."""

    data_coding: int
    esm_class: int
    parts: list[bytes]


def is_gsm(text: str) -> bool:
    """Tell whether the whole text fits the GSM 7-bit alphabet with its extension table."""
    return all(ch in GSM_CHARS for ch in text)


def gsm_encode(text: str) -> bytes:
    """Encode text as unpacked GSM septets; raises UnicodeEncodeError outside the alphabet."""
    try:
        return b"".join([_ENCODE[ch] for ch in text])
    except KeyError as exc:
        pos = next(i for i, ch in enumerate(text) if ch not in _ENCODE)
        raise UnicodeEncodeError("gsm03.38", text, pos, pos + 1, "not in GSM 03.38") from exc


def gsm_decode(data: bytes) -> str:
    """Decode unpacked GSM septets, escape sequences included."""
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == gsm7.ESC:
            if i + 1 >= n or data[i + 1] not in gsm7.EXTENSION_CHAR:
                raise GsmDecodeError(f"bad escape sequence at {i}")
            out.append(gsm7.EXTENSION_CHAR[data[i + 1]])
            i += 2
            continue
        ch = _DECODE_BASIC.get(b)
        if ch is None:
            raise GsmDecodeError(f"octet 0x{b:02x} at {i} is not a septet")
        out.append(ch)
        i += 1
    return "".join(out)


def _septet_units(text: str) -> list[int]:
    return [len(_ENCODE[ch]) for ch in text]


def _ucs2_units(text: str) -> list[int]:
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _split(units: list[int], limit: int) -> list[tuple[int, int]]:
    """Cut a run of characters (each `units[i]` wide) into [start, end) pieces of <= limit."""
    pieces: list[tuple[int, int]] = []
    start = 0
    used = 0
    for i, width in enumerate(units):
        if used + width > limit:
            pieces.append((start, i))
            start = i
            used = 0
        used += width
    pieces.append((start, len(units)))
    return pieces


def _pieces(text: str) -> tuple[bool, list[tuple[int, int]]]:
    gsm = is_gsm(text)
    units = _septet_units(text) if gsm else _ucs2_units(text)
    single = GSM_SINGLE_SEPTETS if gsm else UCS2_SINGLE_UNITS
    if sum(units) <= single:
        return gsm, [(0, len(text))]
    return gsm, _split(units, GSM_SEGMENT_SEPTETS if gsm else UCS2_SEGMENT_UNITS)


@functools.lru_cache(maxsize=256)
def segment_count(text: str) -> int:
    """Number of SMS segments (communication units) the text takes."""
    return len(_pieces(text)[1])


def encode_text(text: str, *, reference: int) -> EncodedText:
    """Encode a text into submit_sm payloads, with a concatenation UDH when it is split."""
    coding, bodies = _encoded_bodies(text)
    if len(bodies) == 1:
        return EncodedText(coding, 0, [bodies[0]])
    ref = reference & 0xFF
    total = len(bodies)
    parts = [bytes((5, 0, 3, ref, total, n)) + body for n, body in enumerate(bodies, start=1)]
    return EncodedText(coding, ESM_UDHI, parts)


@functools.lru_cache(maxsize=256)
def _encoded_bodies(text: str) -> tuple[int, tuple[bytes, ...]]:
    """Data coding and the segments' text bytes (no UDH), kept per text: an alert sends the same
    text to every recipient, and encoding it again cost about 19 us per submission."""
    gsm, pieces = _pieces(text)
    if len(pieces) > MAX_SEGMENTS:
        raise ValueError(f"text needs {len(pieces)} segments, at most {MAX_SEGMENTS} allowed")
    coding = DATA_CODING_GSM if gsm else DATA_CODING_UCS2
    encode = gsm_encode if gsm else _ucs2_encode
    if len(pieces) == 1:
        return coding, (encode(text),)
    return coding, tuple(encode(text[start:end]) for start, end in pieces)


def _ucs2_encode(text: str) -> bytes:
    return text.encode("utf-16-be")


def decode_payload(data_coding: int, payload: bytes) -> str:
    """Decode a short_message body (UDH already removed) for data_coding 0 or 8."""
    if data_coding == DATA_CODING_UCS2:
        return payload.decode("utf-16-be", errors="surrogatepass")
    if data_coding == DATA_CODING_GSM:
        return gsm_decode(payload)
    return payload.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Concat:
    """Concatenation info from a user data header."""

    reference: int
    total: int
    number: int


def split_udh(short_message: bytes) -> tuple[Concat | None, bytes]:
    """Split a UDHI short_message into its concatenation info (if any) and the text bytes."""
    if not short_message:
        raise ValueError("empty short_message with UDHI set")
    udhl = short_message[0]
    if udhl + 1 > len(short_message):
        raise ValueError("UDH longer than short_message")
    udh = short_message[1 : 1 + udhl]
    concat: Concat | None = None
    i = 0
    while i + 2 <= len(udh):
        iei, iel = udh[i], udh[i + 1]
        value = udh[i + 2 : i + 2 + iel]
        if len(value) != iel:
            raise ValueError("truncated UDH information element")
        if iei == 0x00 and iel == 3:
            concat = Concat(value[0], value[1], value[2])
        elif iei == 0x08 and iel == 4:
            concat = Concat((value[0] << 8) | value[1], value[2], value[3])
        i += 2 + iel
    return concat, short_message[1 + udhl :]

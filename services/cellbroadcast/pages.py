"""CBS pages (3GPP TS 23.038 section 5 and 6, TS 23.041 section 9.4.1.2.4): text to 82-octet pages.

A CBS message is 1 to 15 pages of 82 octets. In the GSM 7-bit default alphabet a page holds 93
septets, packed, padded to the end with CR; an extension character (two septets) never straddles
two pages. A text with any character outside the alphabet goes as UCS-2 (UTF-16 big-endian, no
byte-order mark): 41 code units a page, padded with CR, a surrogate pair never split.

The data coding scheme carries the language: the "language group" codes 0x00-0x0F name it for
7-bit text; UCS-2 text uses 0x11, whose first page opens with the language as two 7-bit
characters (two octets) followed by 40 code units. Text in several languages (or none) uses 0x0F
(7-bit, language unspecified) or 0x48 (UCS-2, general data coding).

This module is pure (no I/O): the cell broadcast service builds pages with it, and alerting
counts them at CreateAlert to refuse a text that cannot be broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass

from telecom import gsm7

#: Octets of a page's content (88-octet CBS page less its 6-octet header).
PAGE_OCTETS = 82
#: Septets of a 7-bit page (82 * 8 // 7).
GSM7_PAGE_SEPTETS = 93
#: UCS-2 code units of a page.
UCS2_PAGE_UNITS = 41
#: Pages of one CBS message at most.
MAX_PAGES = 15
#: Carriage return, the padding of a page.
CR = 0x0D

#: TS 23.038 section 5, coding group 0000: 7-bit default alphabet with the language named.
GSM7_LANGUAGE_DCS = {
    "de": 0x00,
    "en": 0x01,
    "it": 0x02,
    "fr": 0x03,
    "es": 0x04,
    "nl": 0x05,
    "sv": 0x06,
    "da": 0x07,
    "pt": 0x08,
    "fi": 0x09,
    "no": 0x0A,
    "el": 0x0B,
    "tr": 0x0C,
    "hu": 0x0D,
    "pl": 0x0E,
}
_DCS_LANGUAGE = {v: k for k, v in GSM7_LANGUAGE_DCS.items()}
#: 7-bit default alphabet, language unspecified.
DCS_GSM7_UNSPECIFIED = 0x0F
#: UCS-2, the message preceded by its language (two 7-bit characters).
DCS_UCS2_LANGUAGE = 0x11
#: General data coding, UCS-2, no message class (several languages or none).
DCS_UCS2_GENERAL = 0x48


class PagesError(ValueError):
    """A text that cannot be broadcast (too long, or pages that do not decode)."""


@dataclass(frozen=True)
class Pages:
    """An encoded CBS message body: its data coding scheme and its 82-octet pages."""

    dcs: int
    pages: tuple[bytes, ...]


def gsm7_septets(text: str) -> list[int] | None:
    """The text's septets in the default alphabet (escapes included), or None if it has none."""
    out: list[int] = []
    for c in text:
        code = gsm7.BASIC_CODE.get(c)
        if code is not None:
            out.append(code)
            continue
        ext = gsm7.EXTENSION.get(c)
        if ext is None:
            return None
        out += (gsm7.ESC, ext)
    return out


def pack_septets(septets: list[int]) -> bytes:
    """Pack septets least significant bit first (TS 23.038 section 6.1.2.1.1)."""
    acc = bits = 0
    out = bytearray()
    for s in septets:
        acc |= s << bits
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int) -> list[int]:
    """The first `count` septets packed in `data`."""
    value = int.from_bytes(data, "little")
    return [(value >> (7 * i)) & 0x7F for i in range(count)]


def _gsm7_chunks(septets: list[int]) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    i = 0
    while i < len(septets):
        width = 2 if septets[i] == gsm7.ESC else 1
        if len(chunks[-1]) + width > GSM7_PAGE_SEPTETS:
            chunks.append([])
        chunks[-1].extend(septets[i : i + width])
        i += width
    return chunks


def _ucs2_chunks(units: list[int], first: int) -> list[list[int]]:
    chunks: list[list[int]] = [[]]
    room = first
    i = 0
    while i < len(units):
        width = 2 if 0xD800 <= units[i] < 0xDC00 else 1
        if len(chunks[-1]) + width > room:
            chunks.append([])
            room = UCS2_PAGE_UNITS
        chunks[-1].extend(units[i : i + width])
        i += width
    return chunks


def encode(text: str, *, language: str | None) -> Pages:
    """Encode a text into pages, its language in the DCS; PagesError past MAX_PAGES."""
    septets = gsm7_septets(text)
    if septets is not None:
        dcs = GSM7_LANGUAGE_DCS.get(language or "", DCS_GSM7_UNSPECIFIED)
        pages = tuple(
            pack_septets(chunk + [CR] * (GSM7_PAGE_SEPTETS - len(chunk)))
            for chunk in _gsm7_chunks(septets)
        )
    else:
        raw = text.encode("utf-16-be")
        units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        prefix = b""
        dcs = DCS_UCS2_GENERAL
        if language and len(language) == 2 and gsm7_septets(language) is not None:
            dcs = DCS_UCS2_LANGUAGE
            prefix = pack_septets(gsm7_septets(language) or [])
        chunks = _ucs2_chunks(units, UCS2_PAGE_UNITS - len(prefix) // 2)
        out = []
        for n, chunk in enumerate(chunks):
            head = prefix if n == 0 else b""
            room = (PAGE_OCTETS - len(head)) // 2
            body = b"".join(u.to_bytes(2, "big") for u in chunk + [CR] * (room - len(chunk)))
            out.append(head + body)
        pages = tuple(out)
    if len(pages) > MAX_PAGES:
        raise PagesError(f"{len(pages)} pages of cell broadcast, at most {MAX_PAGES}")
    return Pages(dcs=dcs, pages=pages)


def page_count(text: str) -> int:
    """How many pages the text takes (a language in the DCS does not change the count)."""
    septets = gsm7_septets(text)
    if septets is not None:
        return len(_gsm7_chunks(septets))
    raw = text.encode("utf-16-be")
    units = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return len(_ucs2_chunks(units, UCS2_PAGE_UNITS - 1))


def decode(pages: Pages) -> tuple[str | None, str]:
    """The language (if the DCS names one) and text of pages, each page's padding dropped."""
    if not 1 <= len(pages.pages) <= MAX_PAGES or any(len(p) != PAGE_OCTETS for p in pages.pages):
        raise PagesError("1 to 15 pages of 82 octets expected")
    if pages.dcs in (DCS_UCS2_LANGUAGE, DCS_UCS2_GENERAL):
        language = None
        units: list[str] = []
        for n, page in enumerate(pages.pages):
            if n == 0 and pages.dcs == DCS_UCS2_LANGUAGE:
                language = "".join(gsm7.BASIC[s] for s in unpack_septets(page[:2], 2))
                page = page[2:]
            units.append(page.decode("utf-16-be").rstrip("\r"))
        return language, "".join(units)
    if pages.dcs not in _DCS_LANGUAGE and pages.dcs != DCS_GSM7_UNSPECIFIED:
        raise PagesError(f"data coding scheme {pages.dcs:#04x} not supported")
    texts: list[str] = []
    for page in pages.pages:
        septets = unpack_septets(page, GSM7_PAGE_SEPTETS)
        chars: list[str] = []
        i = 0
        while i < len(septets):
            if septets[i] == gsm7.ESC and i + 1 < len(septets):
                chars.append(gsm7.EXTENSION_CHAR.get(septets[i + 1], " "))
                i += 2
                continue
            chars.append(gsm7.BASIC[septets[i]])
            i += 1
        texts.append("".join(chars).rstrip("\r"))
    return _DCS_LANGUAGE.get(pages.dcs), "".join(texts)

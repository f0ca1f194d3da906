"""CBS pages against independent decoders: pycrate's TS 23.038 7-bit and CBS DCS, and UCS-2.

smspdudecoder does not import with the bitstring that pycrate needs, so UCS-2 pages are read with
the standard library's UTF-16-BE codec (no code of ours), their DCS with pycrate's CBS_DCS.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrate_mobile.TS23038 import CBS_DCS, decode_7b  # type: ignore[import-untyped]

from services.cellbroadcast import pages as P
from telecom import gsm7

GSM_CHARS = [c for c in gsm7.BASIC if c not in "\x1b\r"] + list(gsm7.EXTENSION)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), min_size=1, max_size=1300)
# Any character of the basic multilingual plane and beyond, less CR (the padding) and lone
# surrogates (not text); at least one outside the 7-bit alphabet so that UCS-2 is used.
ucs2_text = st.builds(
    lambda a, b: a + "ë" + b,
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=250),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=250),
)


LANGUAGE_NAMES = {"nl": "Dutch", "fr": "French", "de": "German", "en": "English"}


def pycrate_dcs(dcs: int) -> str:
    """pycrate's reading of a CBS data coding scheme."""
    parsed = CBS_DCS()
    parsed.from_bytes(bytes([dcs]))
    text: str = parsed.repr()
    return text


def pycrate_gsm7(pages: P.Pages) -> str:
    """Decode 7-bit pages with pycrate; each page's CR padding dropped."""
    return "".join(decode_7b(page).rstrip("\r") for page in pages.pages)


@given(gsm_text, st.sampled_from(["nl", "fr", "de", "en"]))
def test_gsm7_pages_decode_with_pycrate(text: str, language: str) -> None:
    """93 septets a page, 82 octets, CR padding, the language in the DCS: pycrate reads it back."""
    try:
        pages = P.encode(text, language=language)
    except P.PagesError:
        assert P.page_count(text) > P.MAX_PAGES
        return
    assert f"({LANGUAGE_NAMES[language]})" in pycrate_dcs(pages.dcs)
    assert all(len(p) == P.PAGE_OCTETS for p in pages.pages)
    assert len(pages.pages) == P.page_count(text)
    assert pycrate_gsm7(pages) == text
    assert P.decode(pages) == (language, text)


@given(ucs2_text, st.sampled_from(["nl", "fr", "de", "en"]))
def test_ucs2_pages_decode_with_smspdudecoder(text: str, language: str) -> None:
    """UCS-2 big-endian, 41 units a page (40 on the first after the language): smspdudecoder."""
    try:
        pages = P.encode(text, language=language)
    except P.PagesError:
        assert P.page_count(text) > P.MAX_PAGES
        return
    assert "UCS2; message preceded by language indication" in pycrate_dcs(pages.dcs)
    assert all(len(p) == P.PAGE_OCTETS for p in pages.pages)
    assert decode_7b(pages.pages[0][:2]) == language
    body = [pages.pages[0][2:], *pages.pages[1:]]
    assert "".join(p.decode("utf-16-be").rstrip("\r") for p in body) == text
    assert P.decode(pages) == (language, text)


def test_page_boundaries() -> None:
    """93 characters fill one page; the 94th opens a second; a € never straddles two."""
    assert len(P.encode("a" * 93, language="en").pages) == 1
    assert len(P.encode("a" * 94, language="en").pages) == 2
    straddling = P.encode("a" * 92 + "€", language="en")
    assert len(straddling.pages) == 2
    assert pycrate_gsm7(straddling) == "a" * 92 + "€"
    assert len(P.encode("é" * 41 + "ë", language=None).pages) == 2  # 0x48: 41 units a page
    assert len(P.encode("ë" * 40, language="nl").pages) == 1  # 0x11: 40 after the language


def test_fifteen_pages_at_most() -> None:
    """15 pages of 7-bit text pass; one character more is refused."""
    assert len(P.encode("x" * 93 * 15, language="fr").pages) == 15
    with pytest.raises(P.PagesError, match="16 pages"):
        P.encode("x" * (93 * 15 + 1), language="fr")

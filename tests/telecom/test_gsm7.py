"""The GSM 03.38 tables against pycrate's (TS 23.038), an independent copy."""

from __future__ import annotations

from pycrate_mobile.TS23038 import _GSM7bExtLUT, _GSM7bTab  # type: ignore[import-untyped]

from telecom import gsm7


def test_the_basic_table_is_the_standards() -> None:
    assert _GSM7bTab == gsm7.BASIC
    assert gsm7.BASIC[gsm7.ESC] == "\x1b"


def test_the_extension_table_is_the_standards_printable_part() -> None:
    # pycrate also lists 0x0D (page break, SS2) and 0x1B (reserved): not characters of a text.
    printable = {code: ch for code, ch in _GSM7bExtLUT.items() if code not in (0x0D, gsm7.ESC)}
    assert {code: ch for ch, code in gsm7.EXTENSION.items()} == printable


def test_no_character_is_in_both_tables() -> None:
    assert not set(gsm7.EXTENSION) & set(gsm7.BASIC)

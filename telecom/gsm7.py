"""The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 section 6.2.1).

The SMPP gateway sends texts in it as unpacked septets (gateways/smpp/gsm.py), the cell broadcast
service as packed CBS pages (services/cellbroadcast/pages.py); both read these tables and lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: The escape to the extension table (septet 0x1B): no character of its own.
ESC: Final = 0x1B

#: The basic table: the character of each septet 0x00-0x7F (at 0x1B the escape itself).
# fmt: off
BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# fmt: on
#: The extension table: each character and the septet that follows the escape.
EXTENSION: Final[Mapping[str, int]] = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

assert len(BASIC) == 128
assert BASIC[ESC] == "\x1b"

#: The septet of each character of the basic table (the escape excluded).
BASIC_CODE: Final[Mapping[str, int]] = {c: i for i, c in enumerate(BASIC) if i != ESC}
#: The character of each septet that may follow the escape.
EXTENSION_CHAR: Final[Mapping[int, str]] = {code: c for c, code in EXTENSION.items()}

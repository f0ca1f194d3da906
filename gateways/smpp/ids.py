"""Message ids as SMSCs write them: one canonical form for the submit_sm_resp and the receipt.

Many SMSCs answer submit_sm with a hexadecimal id and write the receipt with the same number in
decimal, or with leading zeros, or in upper case. Kannel keeps a per-SMSC `msg-id-type` for this;
here each bind says how its SMSC writes each of the two, and the client turns both into the
decimal digits of the number, so that the service matches them as plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class IdFormat(StrEnum):
    """How an SMSC writes a message id in one of its PDUs."""

    TEXT = "text"  #: an opaque string, compared as written (the default)
    DECIMAL = "decimal"  #: a decimal number, maybe with leading zeros
    HEX = "hex"  #: a hexadecimal number, either case, maybe with leading zeros


def canonical(raw: str, fmt: IdFormat) -> str:
    """The id as the decimal digits of its number, or as written for TEXT or a non-number."""
    if fmt is IdFormat.TEXT or not raw:
        return raw
    try:
        return str(int(raw, 16 if fmt is IdFormat.HEX else 10))
    except ValueError:
        return raw

"""Communication units of an alert: SMS segments per recipient plus one per voice message."""

from __future__ import annotations

import math

from services.targeting.model import Channel, Counts

#: Price of one communication unit in euro cents (EUR 0.055, excl. VAT).
UNIT_PRICE_EUR_CENTS = 5.5

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> int:
    """Segments of one SMS: GSM 03.38 7-bit (160, or 153 when split), else UCS-2 (70 / 67)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in text):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def units(*, counts: Counts, texts: dict[str, str]) -> int:
    """Units charged: each SMS recipient's segments in their language, one per voice message."""
    fallback = max((sms_segments(t) for t in texts.values()), default=1)
    sms = sum(
        n * (sms_segments(texts[lang]) if lang in texts else fallback)
        for lang, n in counts.by_channel[Channel.SMS].items()
    )
    return sms + counts.total(Channel.VOICE)


def cost_eur_cents(units_: int) -> int:
    """Cost of the units in euro cents, rounded up."""
    return math.ceil(units_ * UNIT_PRICE_EUR_CENTS)

"""Communication units and their price: the one place that says what a text costs.

The preview (targeting and alerting), the ledger (alerting's settler, from the channels'
counters) and the SMS channel all count through `Units`, whose SMS segmentation is the SMPP
gateway's own (`gateways.smpp.segment_count`: escape sequences and surrogate pairs never split
across segments), handed in at each service's wiring point: services do not import gateways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from services.channel.codec import text_for

#: Price of one communication unit (one SMS segment, one answered call), EUR excl. VAT.
UNIT_PRICE = Decimal("0.055")
#: Segments an SMS text takes, as the gateway will send it.
SegmentCounter = Callable[[str], int]
#: Units per recipient of the channels that cost nothing per text length: a voice message is
#: one unit once answered; e-mail, cell broadcast, location-based SMS and the CAP feed are free.
FLAT_UNITS = {"voice": 1}
#: Texts whose segments are remembered (one per alert version and language in practice).
_CACHED_TEXTS = 1000


def price(units: int) -> Decimal:
    """What `units` communication units cost, EUR."""
    return UNIT_PRICE * units


def to_cents(amount: Decimal) -> int:
    """An amount in EUR as whole cents, half up."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cost_cents(units: int) -> int:
    """What `units` cost, in whole euro cents (half up)."""
    return to_cents(price(units))


class Units:
    """Units of texts and audiences, over the gateway's segmentation."""

    def __init__(self, segment_count: SegmentCounter) -> None:
        self._segments = segment_count
        self._cache: dict[str, int] = {}

    def sms(self, text: str) -> int:
        """Segments of one SMS text (ValueError if the gateway cannot encode it)."""
        found = self._cache.get(text)
        if found is None:
            found = self._segments(text)
            if len(self._cache) < _CACHED_TEXTS:
                self._cache[text] = found
        return found

    def per_recipient(self, channel: str, text: str) -> int:
        """Units one recipient of `channel` costs with `text`."""
        if channel == "sms":
            return self.sms(text)
        return FLAT_UNITS.get(channel, 0)

    def audience(self, recipients: Mapping[tuple[str, str], int], texts: Mapping[str, str]) -> int:
        """Units of an audience, (channel, citizen's language) -> recipients, each getting the
        text the channel worker will pick for their language (`codec.text_for`)."""
        return sum(
            n * self.per_recipient(channel, text_for(texts, language) if texts else "")
            for (channel, language), n in recipients.items()
            if n
        )

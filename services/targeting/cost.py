"""Communication units and cost of a previewed audience, counted by the shared units module."""

from __future__ import annotations

from services.channel.units import Units, cost_cents
from services.targeting.model import Counts

__all__ = ["audience_units", "cost_cents"]


def audience_units(units: Units, *, counts: Counts, texts: dict[str, str]) -> int:
    """Units charged if the audience gets these texts: per channel and citizen's language."""
    return units.audience(
        {
            (channel.value, language): n
            for channel, per_language in counts.by_channel.items()
            for language, n in per_language.items()
        },
        texts,
    )

"""Number validation and routing of a number to its operator by longest prefix."""

from __future__ import annotations

from collections.abc import Iterable

_DIGITS = frozenset("0123456789")


def is_e164(number: str) -> bool:
    """Whether `number` is E.164 with its '+': 7 to 15 ASCII digits, no leading zero."""
    return (
        8 <= len(number) <= 16
        and number[0] == "+"
        and number[1] != "0"
        and _DIGITS.issuperset(number[1:])
    )


class Router:
    """Longest-prefix routing over operators' number prefixes, with a default operator."""

    def __init__(self, *, routes: Iterable[tuple[str, Iterable[str]]], default: str) -> None:
        self.default = default
        self._by_prefix: dict[str, str] = {}
        for operator, prefixes in routes:
            for prefix in prefixes:
                self._by_prefix[prefix] = operator
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)
        self._cache: dict[str, str] = {}
        # The first 8 digits decide the route when no prefix is longer, so they can be cached.
        self._cacheable = not self._lengths or self._lengths[0] <= 8

    def route(self, number: str) -> str:
        """Operator for an E.164 number (with '+')."""
        digits = number[1:]
        head = digits[:8]
        hit = self._cache.get(head)
        if hit is not None:
            return hit
        operator = self.default
        for length in self._lengths:
            found = self._by_prefix.get(digits[:length])
            if found is not None:
                operator = found
                break
        if self._cacheable and len(head) == 8 and len(self._cache) < 100_000:
            self._cache[head] = operator
        return operator

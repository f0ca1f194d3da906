"""Redis' clock seen from this process: when a lease that Redis placed on its clock starts here."""

from __future__ import annotations

#: How fast Redis' clock (TIME: the wall clock of its host) and this process' monotonic clock may
#: drift apart, in seconds per second (NTP slews a wall clock by at most 500 ppm; 100 ppm covers a
#: synchronised host with room to spare). Only widens the error kept between two answers.
DRIFT = 100e-6


class RedisClock:
    """The offset of Redis' clock from this process' clock, from the script's answers.

    Each answer carries Redis' time `clock`; the call went out at `sent` and its answer was read at
    `read` on this process' clock, so the offset lies in `[clock - read, clock - sent]` whatever
    the process did meanwhile (a busy event loop, a descheduled process only widen the interval).
    The estimate is the intersection of the narrowest intervals seen, widened by the drift since:
    a lease then starts here when Redis meant it to, within about half the fastest round trip, not
    late or early by however long this call happened to take. An answer that contradicts the
    estimate (the wall clock was stepped) replaces it.
    """

    def __init__(self, *, drift: float = DRIFT) -> None:
        self._drift = drift
        self._offset: float | None = None
        self._error = 0.0
        self._at = 0.0

    @property
    def error(self) -> float | None:
        """Half-width (seconds) of the interval the offset is known to be in; None before any."""
        return None if self._offset is None else self._error

    def observe(self, clock: float, sent: float, read: float) -> None:
        """Learn from one answer: Redis' `clock`, the call `sent` and `read` on this clock."""
        low, high = clock - read, clock - sent
        if self._offset is not None:
            widened = self._error + self._drift * max(0.0, read - self._at)
            low, high = max(low, self._offset - widened), min(high, self._offset + widened)
            if low > high:  # the clocks jumped: this answer alone holds
                low, high = clock - read, clock - sent
        self._offset = (low + high) / 2
        self._error = (high - low) / 2
        self._at = read

    def local(self, clock: float) -> float:
        """The latest time on this process' clock that Redis time `clock` can be.

        Late rather than early: a lease mapped early would start over the one before it.
        """
        if self._offset is None:
            raise RuntimeError("no answer from Redis observed yet")
        return clock - self._offset + self._error

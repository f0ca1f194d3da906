"""How the simulated contact centre behaves."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContactCentreConfig:
    """Timings, figures and faults of the simulated provider (seconds of its own clock)."""

    host: str = "127.0.0.1"
    #: 0: any free port (the tests); `make run` gives one.
    port: int = 0
    #: The information number it opens lines on.
    number: str = "1771"
    #: Seconds from receiving an activation to acknowledging it.
    ack_after_s: float = 0.0
    #: Seconds from receiving an activation to opening the line (the promise is 3600).
    open_after_s: float = 600.0
    #: Never opens a line (acknowledges it all the same).
    never_open: bool = False
    #: Calls offered per hour and language line, unless `calls` names the language.
    calls_per_hour: int = 120
    #: Calls offered per hour for some languages, e.g. {"nl": 300, "fr": 120}.
    calls: dict[str, int] = field(default_factory=dict)
    #: Average handling time of a call, seconds.
    aht_s: float = 180.0
    #: Share of offered calls abandoned before an answer.
    abandon_ratio: float = 0.05
    #: Seconds from receiving a closure to reporting the line closed.
    close_after_s: float = 0.0
    #: Answer every request with HTTP 503 (a provider down).
    unavailable: bool = False

"""Settings of the CBC simulator: what it accepts and how it misbehaves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CbcConfig:
    """One simulated operator platform (CBC and LB-SMS on one HTTP port). Shares in [0, 1]."""

    name: str = "cbc"  # operator name, for logs
    host: str = "127.0.0.1"  # loopback only
    port: int = 0  # 0 picks a free port
    latency_s: float = 0.0  # delay before every answer
    refuse_share: float = 0.0  # POSTs answered 400 "refused by the simulator"
    error_share: float = 0.0  # requests answered 500
    conflict_all: bool = False  # every create answered 409, as if the identifier were active
    outage: bool = False  # every request answered 503 (a CBC that is up but out of order)
    plmn_only: bool = False  # accept only `scope_plmn`, as osmo-cbc does
    phones_per_cell: int = 250  # LB-SMS: phones reached per cell of the zone
    phones_per_km2: int = 400  # LB-SMS: phones reached per km² of a polygon zone
    lbsms_zones: tuple[str, ...] = ("cells", "polygon")  # LB-SMS: zone kinds taken
    lbsms: bool = True  # serve the LB-SMS platform on the same port
    seed: int | None = None  # seed of the draws, for repeatable runs

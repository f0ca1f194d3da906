"""Settings of the cell broadcast service: the operators' CBCs and LB-SMS platforms, retries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from services.kernel import ServiceSettings
from services.kernel.operators import load_operators


@dataclass(frozen=True)
class CbcSpec:
    """An operator's CBC (ECBE REST)."""

    url: str
    #: "cells": the zone's cells in `scope_cells`; "plmn": the whole network (osmo-cbc as is).
    scope: str = "cells"
    #: Our name as the CBC knows it (ECBE `cbe_name`).
    cbe_name: str = "tocsin"
    #: Seconds between two broadcasts of a message (ECBE `repetition_period`, 1-4095).
    repetition_period: int = 60


@dataclass(frozen=True)
class LbSmsSpec:
    """An operator's location-based SMS platform."""

    url: str
    #: How the platform takes the zone: "cells" (the operator's cells in it) or "polygon" (the
    #: alert's zone as GeoJSON; the operator finds the phones in it itself).
    zone: str = "cells"


#: How an LB-SMS platform may take the zone.
LBSMS_ZONES = ("cells", "polygon")


@dataclass(frozen=True)
class Platform:
    """What one operator offers for the presence channels."""

    operator: str
    cbc: CbcSpec | None
    lbsms: LbSmsSpec | None


def _pairs(spec: str, *, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, url = part.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise ValueError(f"{field} {part!r} is not `operator=http://host:port`")
        out[name.strip()] = url.strip()
    return out


class Settings(ServiceSettings):
    """Settings of the cell-broadcast service (env prefix TOCSIN_)."""

    default_grpc_port: ClassVar[int] = 50055
    default_metrics_port: ClassVar[int] = 9105

    # Operators' CBCs: `opA=http://127.0.0.1:8101,opB=http://127.0.0.1:8102`.
    cbc: str = ""
    # Operators' LB-SMS platforms, same form; empty: none.
    lbsms: str = ""
    # The operators file (docs/operators.md): each `[operators.<name>]` may have a `cbc` section
    # (url, scope, cbe_name, repetition_period) and an `lbsms` one (url, zone: cells or polygon);
    # it replaces cbc, lbsms.
    operators_file: Path | None = None
    # Seconds one HTTP request to an operator may take.
    request_timeout_s: float = Field(default=2.0, gt=0)
    # First wait before retrying an operator that failed; doubled up to retry_max_s.
    retry_min_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=5.0, gt=0)
    # How long a process holds a request it works on beyond its backoff (a dead one's expire).
    lease_s: float = Field(default=10.0, gt=0)
    # Seconds between two sweeps for open requests nobody holds.
    sweep_s: float = Field(default=2.0, gt=0)
    # How long Broadcast/Withdraw wait for the operators' first answers before replying
    # (the others keep going and show in GetAlertStatus).
    answer_wait_s: float = Field(default=1.0, ge=0)

    def platforms(self) -> list[Platform]:
        """Every operator with a CBC or an LB-SMS platform; ValueError names the problem."""
        if self.operators_file:
            return self._from_file()
        cbcs = _pairs(self.cbc, field="cbc")
        lbsms = _pairs(self.lbsms, field="lbsms")
        return [
            Platform(
                op,
                CbcSpec(cbcs[op]) if op in cbcs else None,
                LbSmsSpec(lbsms[op]) if op in lbsms else None,
            )
            for op in sorted(set(cbcs) | set(lbsms))
        ]

    def _from_file(self) -> list[Platform]:
        assert self.operators_file is not None
        out: list[Platform] = []
        for op in load_operators(self.operators_file):
            cbc, lbsms = op.sections.get("cbc"), op.sections.get("lbsms")
            if cbc is None and lbsms is None:
                continue
            out.append(Platform(op.name, _cbc(op.name, cbc), _lbsms(op.name, lbsms)))
        return out


def _url(section: Mapping[str, Any], where: str) -> str:
    url = section.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{where}.url is required: http://host:port or https://...")
    return url


def _cbc(name: str, section: Mapping[str, Any] | None) -> CbcSpec | None:
    """The `[operators.<name>.cbc]` section, checked field by field."""
    if section is None:
        return None
    where = f"operators.{name}.cbc"
    unknown = set(section) - {"url", "scope", "cbe_name", "repetition_period"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    scope = section.get("scope", "cells")
    if scope not in ("cells", "plmn"):
        raise ValueError(f"{where}.scope is `cells` or `plmn`")
    cbe_name = section.get("cbe_name", "tocsin")
    if not isinstance(cbe_name, str) or not cbe_name:
        raise ValueError(f"{where}.cbe_name is a non-empty string")
    period = section.get("repetition_period", 60)
    if not isinstance(period, int) or not 1 <= period <= 4095:
        raise ValueError(f"{where}.repetition_period is 1 to 4095 seconds")
    return CbcSpec(_url(section, where), scope, cbe_name, period)


def _lbsms(name: str, section: Mapping[str, Any] | None) -> LbSmsSpec | None:
    """The `[operators.<name>.lbsms]` section."""
    if section is None:
        return None
    where = f"operators.{name}.lbsms"
    unknown = set(section) - {"url", "zone"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    zone = section.get("zone", "cells")
    if zone not in LBSMS_ZONES:
        raise ValueError(f"{where}.zone is `cells` or `polygon`")
    return LbSmsSpec(_url(section, where), zone)

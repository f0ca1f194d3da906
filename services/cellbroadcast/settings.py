"""Settings of the cell-broadcast service."""

from __future__ import annotations

from typing import ClassVar

from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """Settings of the cell-broadcast service."""

    default_grpc_port: ClassVar[int] = 50055
    default_metrics_port: ClassVar[int] = 9105

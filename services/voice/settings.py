"""Settings of the voice service."""

from __future__ import annotations

from typing import ClassVar

from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """Settings of the voice service."""

    default_grpc_port: ClassVar[int] = 50054
    default_metrics_port: ClassVar[int] = 9104

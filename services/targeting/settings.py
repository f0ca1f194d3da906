"""Settings of the targeting service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """Targeting settings (environment variables TOCSIN_*)."""

    default_grpc_port: ClassVar[int] = 50052
    default_metrics_port: ClassVar[int] = 9102

    # Recipients per work-stream entry (docs/streams.md: a few hundred).
    batch_size: int = Field(default=500, ge=1, le=10_000)

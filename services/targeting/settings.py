"""Settings of the targeting service."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.channel import codec
from services.kernel import ServiceSettings


class Settings(ServiceSettings):
    """Targeting settings (environment variables TOCSIN_*)."""

    default_grpc_port: ClassVar[int] = 50052
    default_metrics_port: ClassVar[int] = 9102

    # Recipients per work-stream entry; the default is the codec's (docs/streams.md).
    batch_size: int = Field(default=codec.ENTRY_SIZE, ge=1, le=10_000)

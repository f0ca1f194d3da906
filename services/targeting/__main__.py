"""Targeting service process: settings, then the serving kernel."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from tocsin.targeting.v1 import targeting_pb2_grpc

from gateways.smpp import segment_count
from services.channel.units import Units
from services.kernel import Kernel, ServiceSettings, run_service
from services.targeting.servicer import TargetingServicer


class Settings(ServiceSettings):
    """Targeting settings (environment variables TOCSIN_*)."""

    default_grpc_port: ClassVar[int] = 50052
    default_metrics_port: ClassVar[int] = 9102

    # Recipients per work-stream entry (docs/streams.md: a few hundred).
    batch_size: int = Field(default=500, ge=1, le=10_000)


async def build(kernel: Kernel[Settings]) -> None:
    """Register the targeting servicer on the kernel's server."""
    servicer = TargetingServicer(
        pool=kernel.pg,
        redis=kernel.redis,
        batch_size=kernel.settings.batch_size,
        units=Units(segment_count),
    )
    targeting_pb2_grpc.add_TargetingServicer_to_server(servicer, kernel.server)
    kernel.add_service_name("tocsin.targeting.v1.Targeting")


def main() -> None:
    """Run the targeting service until SIGTERM."""
    run_service(name="targeting", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()

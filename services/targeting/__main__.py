"""Targeting service process: settings, then the serving kernel."""

from __future__ import annotations

from tocsin.targeting.v1 import targeting_pb2_grpc

from gateways.smpp import segment_count
from services.channel.units import Units
from services.kernel import Kernel, run_service
from services.targeting.servicer import TargetingServicer
from services.targeting.settings import Settings


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

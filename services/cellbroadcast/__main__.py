"""Cell-broadcast service process: `python -m services.cellbroadcast`."""

from __future__ import annotations

from tocsin.cellbroadcast.v1 import cellbroadcast_pb2, cellbroadcast_pb2_grpc

from services.cellbroadcast.servicer import CellBroadcastServicer
from services.cellbroadcast.settings import Settings
from services.kernel import Kernel, run_service


async def build(kernel: Kernel[Settings]) -> None:
    """Register the cell-broadcast servicer."""
    cellbroadcast_pb2_grpc.add_CellBroadcastServiceServicer_to_server(
        CellBroadcastServicer(), kernel.server
    )
    kernel.add_service_name(
        cellbroadcast_pb2.DESCRIPTOR.services_by_name["CellBroadcastService"].full_name
    )


def main() -> None:
    """Run the cell-broadcast service until SIGTERM."""
    run_service(name="cellbroadcast", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()

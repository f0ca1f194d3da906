"""Voice service process: `python -m services.voice`."""

from __future__ import annotations

from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

from services.kernel import Kernel, run_service
from services.voice.servicer import VoiceServicer
from services.voice.settings import Settings


async def build(kernel: Kernel[Settings]) -> None:
    """Register the voice servicer."""
    voice_pb2_grpc.add_VoiceServiceServicer_to_server(VoiceServicer(), kernel.server)
    kernel.add_service_name(voice_pb2.DESCRIPTOR.services_by_name["VoiceService"].full_name)


def main() -> None:
    """Run the voice service until SIGTERM."""
    run_service(name="voice", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()

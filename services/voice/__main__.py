"""Voice service process: `python -m services.voice`.

The one place that picks the concrete SIP gateway, speech engine and rate limiter behind the
service's ports, and builds the voice channel on the shared channel worker.
"""

from __future__ import annotations

import asyncio

import numpy as np
from tocsin.voice.v1 import voice_pb2, voice_pb2_grpc

from gateways.sip import Credentials, MediaClock, Prompt, SipUac, Timers, Trunk
from gateways.sip.uac import CallResult
from gateways.tts import Espeak, TtsError, render_prompt
from ratelimit.limiter import Limiter, LimiterSettings
from services.channel.apirepair import ApiRepair, run_repair
from services.channel.control import ControlCache
from services.channel.retention import run_retention
from services.channel.worker import ChannelWorker, make_recorder
from services.kernel import Kernel, run_service
from services.voice import batches
from services.voice.api import VoiceApi
from services.voice.capacity import CallPacer, TrunkChannels
from services.voice.channel import CallPolicy, VoiceChannel
from services.voice.prompts import PromptCache
from services.voice.servicer import VoiceServicer
from services.voice.settings import Settings


class SipDialer:
    """The Dialer port over one SIP UAC: trunks by name, the ring timeout and repeats."""

    def __init__(
        self, uac: SipUac, *, trunks: dict[str, Trunk], ring_timeout_s: float, repeat: int
    ) -> None:
        self._uac = uac
        self._trunks = trunks
        self._ring_timeout_s = ring_timeout_s
        self._repeat = repeat

    async def call(
        self, *, trunk: str, number: str, prompt: Prompt, abandon: asyncio.Event
    ) -> CallResult:
        """One attempt on `trunk`."""
        return await self._uac.call(
            trunk=self._trunks[trunk],
            number=number,
            prompt=prompt,
            ring_timeout=self._ring_timeout_s,
            repeat=self._repeat,
            abandon=abandon,
        )


class EspeakSpeech:
    """The Speech port over eSpeak NG: text to G.711 frames."""

    def __init__(self) -> None:
        self._espeak = Espeak()

    def render(self, *, text: str, language: str) -> Prompt:
        """Frames of `text` spoken in `language`."""
        try:
            samples: np.ndarray = self._espeak.speak(text=text, language=language)
        except TtsError as exc:
            raise ValueError(str(exc)) from exc
        return render_prompt(samples)


async def build(kernel: Kernel[Settings]) -> None:
    """SIP UAC, media clock, limiter, channel worker and API of one voice process."""
    settings = kernel.settings
    specs = settings.trunk_specs()
    credentials = (
        Credentials(settings.trunk_username, settings.trunk_password)
        if settings.trunk_username
        else None
    )
    trunks = {
        s.name: Trunk(
            host=s.host,
            port=s.port,
            domain=settings.trunk_domain,
            caller=settings.caller,
            credentials=credentials,
        )
        for s in specs
    }
    clock = await MediaClock.open(host=settings.sip_host)
    uac = await SipUac.open(
        clock=clock,
        host=settings.sip_host,
        port=settings.sip_port,
        timers=Timers(t1=settings.sip_t1_s),
    )
    limiter = Limiter.from_rules(
        kernel.redis, settings.ratelimit_rules, settings=LimiterSettings(replica_group="voice")
    )
    await limiter.start()
    prompts = PromptCache(EspeakSpeech(), size=settings.prompt_cache)
    channel = VoiceChannel(
        trunks={s.name: s.channels for s in specs},
        dialer=SipDialer(
            uac, trunks=trunks, ring_timeout_s=settings.ring_timeout_s, repeat=settings.repeat
        ),
        prompts=prompts,
        channels=TrunkChannels(kernel.redis, limits={s.name: s.channels for s in specs}),
        pacer=CallPacer(limiter),
        control=ControlCache(kernel.redis),
        policy=CallPolicy(
            max_attempts=settings.max_attempts,
            channel_lease_s=settings.channel_lease_s,
            failover_hold_s=settings.failover_hold_s,
        ),
    )
    recorder = make_recorder(channel=channel.name, settings=settings, pool=kernel.pg)
    worker = ChannelWorker(
        channel=channel, settings=settings, pool=kernel.pg, redis=kernel.redis, recorder=recorder
    )
    kernel.add_background(worker.run(), name="voice-worker")
    kernel.add_background(
        run_retention(kernel.pg, settings, channel=channel.name),
        name="voice-retention",
    )
    kernel.add_background(
        channel.watch_control(every_s=settings.control_refresh_s), name="voice-control"
    )
    api = VoiceApi(
        pool=kernel.pg, redis=kernel.redis, trunk=specs[0].name, sender=settings.default_sender
    )
    voice_pb2_grpc.add_VoiceServiceServicer_to_server(VoiceServicer(api), kernel.server)
    # API batches whose stream entries Redis lost: at start-up, then whenever its marker is gone.
    kernel.add_background(
        run_repair(
            ApiRepair(batches.BATCHES, pool=kernel.pg, redis=kernel.redis),
            interval_s=settings.api_repair_interval_s,
        ),
        name="voice-api-repair",
    )
    kernel.add_background(
        batches.BATCHES.run_retention(kernel.pg, interval_s=settings.retention_interval_s),
        name="voice-api-batch-retention",
    )
    kernel.add_service_name(voice_pb2.DESCRIPTOR.services_by_name["VoiceService"].full_name)

    async def shutdown() -> None:
        await worker.drain(timeout=settings.shutdown_grace_s)
        uac.close()
        await clock.close()
        prompts.close()
        await limiter.close()

    kernel.on_shutdown(shutdown)


def main() -> None:
    """Run the voice service until SIGTERM."""
    run_service(name="voice", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()

"""The serving kernel: every service's process is `run_service(...)` and nothing more."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import grpc
import redis.asyncio as aioredis
import uvloop
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.kernel import database, redis_client, tls
from services.kernel.context import configure_logging
from services.kernel.health import HealthReporter
from services.kernel.interceptors import ErrorInterceptor
from services.kernel.settings import ServiceSettings, SettingsError, load_settings
from services.kernel.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)
ShutdownHook = Callable[[], Awaitable[None]]


@dataclass
class Kernel(Generic[S]):
    """What a service's `build` gets: the stores, the server, and hooks into the lifecycle."""

    name: str
    settings: S
    pg: asyncpg.Pool
    redis: aioredis.Redis
    server: grpc.aio.Server
    #: Full gRPC service names registered (for health and reflection).
    grpc_service_names: list[str] = field(default_factory=list)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _shutdown: list[ShutdownHook] = field(default_factory=list)
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    #: Set to stop the process: by SIGTERM or SIGINT, or by a background task that failed.
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def channel(
        self, service: str, address: str, *, options: tls.ChannelOptions = ()
    ) -> grpc.aio.Channel:
        """A channel to another service: mutual TLS with this service's certificate, the peer
        required to be `service`; closed once the server has stopped."""
        channel = tls.open_channel(self.settings, service=service, address=address, options=options)
        self._channels.append(channel)
        return channel

    def add_service_name(self, full_name: str) -> None:
        """Declare a registered gRPC service (e.g. `tocsin.sms.v1.SmsService`)."""
        self.grpc_service_names.append(full_name)

    def add_background(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run a long-lived task (a stream consumer) for the life of the process. If it fails,
        the process stops (health NOT_SERVING, then the usual graceful shutdown) rather than
        serve without it: a supervisor starts it again, where a dead loop would go unseen."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._ended)
        self._background.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        if self._stop.is_set():
            # Stopped while the process shuts down: a library may turn the cancellation into
            # an error of its own (kernel/tasks.py). Said, not alarmed.
            logger.warning("background task %s ended while stopping: %r", task.get_name(), exc)
            return
        logger.critical(
            "background task %s failed; stopping the process", task.get_name(), exc_info=exc
        )
        self._stop.set()

    def on_shutdown(self, hook: ShutdownHook) -> None:
        """Call `hook` on SIGTERM, after health went NOT_SERVING, before the server stops."""
        self._shutdown.append(hook)


Build = Callable[[Kernel[S]], Awaitable[None]]


def _settle_garbage_collector(young_threshold: int) -> None:
    """Move what start-up built out of the collector's way, and collect less often.

    Modules, protobuf descriptors and the servicers live as long as the process; frozen, a full
    collection no longer walks them, which shortens its pauses (the tail of every call's latency).
    A larger young generation means fewer collections for the many short-lived objects of a call.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def _health_server(settings: ServiceSettings, reporter: HealthReporter) -> grpc.aio.Server | None:
    """A plaintext server of the health service alone, for probes that cannot speak TLS."""
    if settings.health_port is None:
        return None
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4096)])
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    server.add_insecure_port(f"{settings.host}:{settings.health_port}")
    return server


def run_service(*, name: str, settings_cls: type[S], build: Build[S]) -> None:
    """Entry point of a service process: settings, logging, serve until SIGTERM, exit."""
    try:
        settings = load_settings(settings_cls)
        tls.check(settings)
    except SettingsError as exc:
        print(f"tocsin-{name}: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service=name, level=settings.log_level)
    uvloop.run(serve(name=name, settings=settings, build=build))


async def serve(
    *, name: str, settings: S, build: Build[S], ready: asyncio.Event | None = None
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation), then shut down gracefully."""
    material = tls.check(settings)
    if material is None:
        logger.warning("INSECURE DEVELOPMENT MODE: plaintext gRPC, callers not authenticated")
    pool = await database.create_pool(settings.database_url, max_size=settings.pg_pool_size)
    redis = redis_client.connect(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, retry_on_timeout=True
    )
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(service=name, authorize=material is not None)],
        options=[
            ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ],
    )
    kernel: Kernel[S] = Kernel(name=name, settings=settings, pg=pool, redis=redis, server=server)
    await build(kernel)
    reporter = HealthReporter(
        service=name,
        grpc_service_names=kernel.grpc_service_names,
        pool=pool,
        redis=redis,
        timeout=settings.health_timeout_s,
    )
    health_pb2_grpc.add_HealthServicer_to_server(reporter.servicer, server)
    reflection.enable_server_reflection(
        [*kernel.grpc_service_names, "grpc.health.v1.Health", reflection.SERVICE_NAME], server
    )
    port = tls.add_port(
        server,
        f"{settings.host}:{settings.grpc_bind_port}",
        material,
        require_client_cert=settings.require_client_cert,
    )
    health_server = _health_server(settings, reporter)
    metrics_server, _ = start_http_server(settings.metrics_bind_port, addr=settings.host)
    await server.start()
    if health_server is not None:
        await health_server.start()
    # Before health may say SERVING: a SIGTERM from then on must find its handler (the loop runs
    # the background tasks while the first check awaits the stores).
    stop = kernel._stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _settle_garbage_collector(settings.gc_young_threshold)
    await reporter.check_once()
    health_task = asyncio.create_task(
        reporter.run(interval=settings.health_interval_s), name="health"
    )
    logger.info(
        "listening grpc=%s:%d metrics=%s:%d",
        settings.host,
        port,
        settings.host,
        metrics_server.server_port,
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        logger.info("shutting down: health NOT_SERVING, finishing in-flight work")
    finally:
        # One budget for the whole shutdown: the hooks take their share of it, the server's
        # last calls get what is left (never the whole grace again, or SIGKILL lands first).
        deadline = loop.time() + settings.shutdown_grace_s
        stop.set()  # also when cancelled: what ends from here on ends by the shutdown
        await reporter.stop_serving()
        # Each hook keeps to the grace itself (a worker's drain takes a timeout) and then closes
        # what it holds: cut short from here, it would leave sockets open.
        for hook in kernel._shutdown:
            await hook()
        await server.stop(max(0.0, deadline - loop.time()))
        if health_server is not None:
            await health_server.stop(None)
        # Asked again until they end: a library may swallow one cancellation (kernel/tasks.py).
        await cancel_and_wait(
            [*kernel._background, health_task], timeout_s=max(1.0, deadline - loop.time())
        )
        for channel in kernel._channels:
            await channel.close()
        metrics_server.shutdown()
        metrics_server.server_close()  # shutdown() stops serving; this closes the socket
        await redis.aclose()
        # close() waits for every connection to be released: one held by a call that never
        # returns (a probe cut off mid-query) must not hold the process past its grace.
        try:
            async with asyncio.timeout(max(1.0, deadline - loop.time())):
                await pool.close()
        except TimeoutError:
            logger.warning("PostgreSQL pool not released in time; connections terminated")
            pool.terminate()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logger.info("stopped")

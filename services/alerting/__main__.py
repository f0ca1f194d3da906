"""Alerting service process: `python -m services.alerting`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2_grpc
from tocsin.targeting.v1 import targeting_pb2_grpc

from gateways.smpp import segment_count
from services.alerting.alerts import Alerts
from services.alerting.auth import LoginGuard, use_cost
from services.alerting.counters import ChannelCounters
from services.alerting.gate import Gate
from services.alerting.infoline.provider import HttpContactCentre
from services.alerting.infoline.service import install as install_infoline
from services.alerting.progress import run_settler
from services.alerting.remote import CellBroadcastClient, TargetingClient
from services.alerting.servicer import add_servicers
from services.alerting.settings import Settings
from services.channel.units import Units
from services.kernel import Kernel, run_service
from services.kernel.database import create_pool

logger = logging.getLogger(__name__)


async def _close_when_stopped(
    pool: asyncpg.Pool, *, grace_s: float, before: Callable[[], Awaitable[None]]
) -> None:
    """Hold the pool for the life of the process; once the server has stopped, run `before`
    (the audit entries written behind their answers) and close it."""
    try:
        await asyncio.Event().wait()
    finally:
        try:
            await before()
        finally:
            await _close(pool, grace_s=grace_s)


async def _close(pool: asyncpg.Pool, *, grace_s: float) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=grace_s)
    except TimeoutError:
        logger.warning("database connections still busy after %.0f s: closing them", grace_s)
        pool.terminate()


async def build(kernel: Kernel[Settings]) -> None:
    """Wire the ports to the peer services and register the three servicers."""
    settings = kernel.settings
    use_cost(settings.scrypt_log2_n)
    if not settings.audit_key.get_secret_value():
        logger.warning("TOCSIN_AUDIT_KEY is not set: the audit chain is not keyed")
    # A pool of the service's own (the kernel's serves health), busy all the time: kept.
    pool = await create_pool(settings.database_url, max_size=settings.pg_pool_size, keep_idle=True)
    targeting_channel = kernel.channel("targeting", settings.targeting_addr)
    cb_channel = kernel.channel("cellbroadcast", settings.cellbroadcast_addr)
    targeting = TargetingClient(
        targeting_pb2_grpc.TargetingStub(targeting_channel), timeout_s=settings.rpc_timeout_s
    )
    # Progress from the channels' counters in PostgreSQL, woken by their notifications.
    deliveries = ChannelCounters(pool)
    kernel.add_background(deliveries.run(), name="progress-listener")
    gate = Gate(
        pool=pool,
        jwt_key=settings.jwt_key.get_secret_value(),
        audit_key=settings.audit_key.get_secret_value().encode(),
        anonymous_audit_per_s=settings.anonymous_audit_per_s,
        previous_jwt_keys=tuple(k for k in [settings.jwt_previous_key.get_secret_value()] if k),
        token_issuer=settings.token_issuer,
        auth_cache_s=settings.auth_cache_s,
        audit_batch=settings.audit_batch,
    )
    # Background tasks are cancelled after the server stopped: in-flight calls keep the pool,
    # and the audit entries written behind their answers are written before it closes.
    kernel.add_background(
        _close_when_stopped(pool, grace_s=settings.shutdown_grace_s, before=gate.drain),
        name="alerting-pool",
    )
    broadcasts = CellBroadcastClient(
        cellbroadcast_pb2_grpc.CellBroadcastServiceStub(cb_channel),
        timeout_s=settings.rpc_timeout_s,
    )
    alerts = Alerts(
        pool=pool,
        redis=kernel.redis,
        targeting=targeting,
        broadcasts=broadcasts,
        enabled_channels=settings.channels,
        units=Units(segment_count),
        preview_cache_s=settings.preview_cache_s,
        max_sms_segments=settings.max_sms_segments,
        resolve_retry_s=settings.resolve_retry_s,
    )
    names = add_servicers(
        kernel.server,
        pool=pool,
        alerts=alerts,
        deliveries=deliveries,
        gate=gate,
        guard=LoginGuard(
            redis=kernel.redis,
            max_failures=settings.login_max_failures,
            window_s=settings.login_lockout_s,
            address_max_failures=settings.login_address_max_failures,
            concurrent_hashes=settings.login_concurrency,
        ),
        token_ttl_s=settings.token_ttl_s,
        watch_interval_s=settings.watch_interval_s,
        broadcasts=broadcasts,
        redis=kernel.redis,
    )
    for name in names:
        kernel.add_service_name(name)
    # The emergency information line (docs/infoline.md): its provider over HTTP/JSON.
    provider = HttpContactCentre(
        base_url=settings.infoline_provider_url, timeout_s=settings.infoline_timeout_s
    )
    kernel.add_service_name(
        install_infoline(kernel, server=kernel.server, pool=pool, gate=gate, provider=provider)
    )
    kernel.on_shutdown(provider.aclose)
    kernel.add_background(
        run_settler(
            pool,
            deliveries=deliveries,
            dispatcher=alerts.dispatcher,
            interval=settings.settle_interval_s,
            # A send still `sending` after its Resolve deadline has no process working on it.
            stale_after=timedelta(seconds=settings.rpc_timeout_s * 20 + 60),
        ),
        name="settler",
    )

    kernel.on_shutdown(alerts.dispatcher.drain)


def main() -> None:
    """Run the alerting service until SIGTERM."""
    run_service(name="alerting", settings_cls=Settings, build=build)


if __name__ == "__main__":
    main()

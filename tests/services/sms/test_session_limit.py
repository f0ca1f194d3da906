"""Two SMS processes against one operator that allows fewer sessions than they bind together:
the SMSC never sees more than the limit, a process stopping hands its slots to the other's
waiting binds, and a killed process's slots come back once their leases lapse."""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2

from services.sms import keys
from simulators.smsc.server import SmscSimulator
from tests.services.kernel.conftest import ServiceProcess
from tests.services.sms.conftest import WIDE_OPEN_RULES, StartSmscs, watch_until

#: Binds each process opens to the operator.
BINDS = 2
#: Named as the operators file allows (lower case).
OPERATOR = "opa"
KEY = keys.operator_sessions(OPERATOR)


def operators_file(tmp_path: Path, smsc: SmscSimulator, *, max_sessions: int) -> Path:
    """An operators file: one operator with BINDS binds to `smsc` and its session limit."""
    bind = f'{{ host = "127.0.0.1", port = {smsc.port} }}'
    path = tmp_path / "operators.toml"
    path.write_text(
        f'[operators.{OPERATOR}]\nprefixes = ["3247"]\nbinds = [{", ".join([bind] * BINDS)}]\n'
        f"max_sessions = {max_sessions}\n",
        encoding="utf-8",
    )
    return path


async def start_sms(
    start_service: Any, *, path: Path, pg_dsn: str, redis_url: str, lease_s: float = 3
) -> ServiceProcess:
    """One SMS process on the operators file, SERVING (its binds start before it serves)."""
    service: ServiceProcess = start_service(
        "sms",
        database_url=pg_dsn,
        redis_url=redis_url,
        TOCSIN_OPERATORS_FILE=str(path),
        TOCSIN_RATELIMIT_RULES=str(WIDE_OPEN_RULES),
        TOCSIN_SMPP_SESSION_LEASE_S=str(lease_s),
        TOCSIN_SHUTDOWN_GRACE_S="10",
        TOCSIN_LOG_LEVEL="WARNING",
    )
    await watch_until(service.target, health_pb2.HealthCheckResponse.SERVING)
    return service


async def gauges(service: ServiceProcess) -> dict[str, float]:
    """The process's session gauges of the operator, from its /metrics."""
    url = f"http://127.0.0.1:{service.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    found = {}
    for short, name in (
        ("held", "tocsin_smpp_sessions_held"),
        ("limit", "tocsin_smpp_session_limit"),
    ):
        match = re.search(rf'^{name}{{operator="{OPERATOR}"}} (\S+)$', text, flags=re.MULTILINE)
        assert match, name
        found[short] = float(match.group(1))
    return found


@pytest.mark.timeout(120)
async def test_a_stopping_process_hands_its_sessions_to_the_waiting_binds(
    smscs: StartSmscs,
    start_service: Any,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    smsc = (await smscs(operators=("opA",))).by_name["opA"]
    path = operators_file(tmp_path, smsc, max_sessions=3)
    first = await start_sms(start_service, path=path, pg_dsn=pg_dsn, redis_url=redis_url)
    await smsc.wait_for(lambda: smsc.bound_sessions == BINDS, timeout=30)
    second = await start_sms(start_service, path=path, pg_dsn=pg_dsn, redis_url=redis_url)
    # The second process gets the one slot left; its other bind waits for one.
    await smsc.wait_for(lambda: smsc.bound_sessions == 3, timeout=30)
    assert await redis_client.zcard(KEY) == 3
    assert await gauges(second) == {"held": 1.0, "limit": 3.0}

    first.popen.send_signal(signal.SIGTERM)  # a rolling update, a node drain
    assert await asyncio.to_thread(first.popen.wait, 40) == 0
    # Both of the first's slots came back after its unbinds; the waiting bind took one of them.
    await smsc.wait_for(lambda: smsc.binds == 2 * BINDS and smsc.bound_sessions == BINDS, 30)
    assert smsc.unbinds == BINDS
    assert smsc.peak_bound == 3
    assert await redis_client.zcard(KEY) == BINDS
    assert await gauges(second) == {"held": 2.0, "limit": 3.0}


@pytest.mark.timeout(120)
async def test_a_killed_process_slots_lapse_and_go_to_the_waiting_binds(
    smscs: StartSmscs,
    start_service: Any,
    pg_dsn: str,
    redis_url: str,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    smsc = (await smscs(operators=("opA",))).by_name["opA"]
    path = operators_file(tmp_path, smsc, max_sessions=BINDS)
    first = await start_sms(
        start_service, path=path, pg_dsn=pg_dsn, redis_url=redis_url, lease_s=2.0
    )
    await smsc.wait_for(lambda: smsc.bound_sessions == BINDS, timeout=30)
    second = await start_sms(
        start_service, path=path, pg_dsn=pg_dsn, redis_url=redis_url, lease_s=2.0
    )

    first.popen.kill()  # no unbind, no release: only the leases' end frees the slots
    assert await asyncio.to_thread(first.popen.wait, 10) == -signal.SIGKILL
    await smsc.wait_for(lambda: smsc.binds == 2 * BINDS and smsc.bound_sessions == BINDS, 30)
    assert smsc.unbinds == 0
    assert smsc.peak_bound == BINDS
    assert await redis_client.zcard(KEY) == BINDS
    assert second.popen.poll() is None

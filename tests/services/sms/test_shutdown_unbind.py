"""On SIGTERM the SMS service closes every bind at once, so the unbinds fit one share of the budget.

Closed one at a time, each bind would wait for its unbind_resp before the next one unbinds: 24
binds at up to 5 s each outlive any grace period, and SIGKILL lands before the work is handed
back. The SMSC here answers no unbind until every bind's unbind has arrived, so only binds that
unbind together are ever answered: one at a time, the first waits out its timeout, drops its
connection unanswered, and so does every next one.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from tests.services.kernel.conftest import ServiceProcess
from tests.services.sms.conftest import WIDE_OPEN_RULES, StartSmscs, watch_until

OPERATORS = ("opA", "opB")
BINDS_PER_OPERATOR = 3
BINDS = len(OPERATORS) * BINDS_PER_OPERATOR
#: Grace of the process: its unbind share is a tenth of it (2 s), well above the time the
#: concurrent unbinds take to arrive, well below the test's own bound.
GRACE_S = 20.0


@pytest.mark.timeout(90)
async def test_sigterm_unbinds_every_bind_at_once(
    smscs: StartSmscs, start_service: Any, pg_dsn: str, redis_url: str
) -> None:
    # One SMSC behind both operators, so one barrier counts every bind of the process.
    sims = await smscs(operators=("shared",), unbind_barrier=BINDS)
    smsc = sims.by_name["shared"]
    service: ServiceProcess = start_service(
        "sms",
        database_url=pg_dsn,
        redis_url=redis_url,
        TOCSIN_SMSC=",".join(f"{op}=127.0.0.1:{smsc.port}" for op in OPERATORS),
        TOCSIN_ROUTES="opA=3247;opB=3249",
        TOCSIN_BINDS_PER_OPERATOR=str(BINDS_PER_OPERATOR),
        TOCSIN_RATELIMIT_RULES=str(WIDE_OPEN_RULES),
        TOCSIN_SHUTDOWN_GRACE_S=str(GRACE_S),
        TOCSIN_LOG_LEVEL="WARNING",
    )
    await watch_until(service.target, health_pb2.HealthCheckResponse.SERVING)
    await smsc.wait_for(lambda: smsc.bound_sessions == BINDS, timeout=30)

    service.popen.send_signal(signal.SIGTERM)
    # In a thread: the simulator answers on this loop. Bounded well past the grace: the process
    # must end on its own, not be killed here.
    assert await asyncio.to_thread(service.popen.wait, GRACE_S + 20) == 0

    # Every unbind arrived while none had been answered, and so every one was answered.
    assert smsc.unbinds_received == BINDS
    assert smsc.unbinds == BINDS
    assert smsc.bound_sessions == 0


async def test_the_barrier_answers_no_unbind_alone(smscs: StartSmscs) -> None:
    """The simulator's barrier holds a lone unbind: what one-at-a-time closing would meet."""
    from gateways.smpp.client import BindConfig, SmppClient

    sims = await smscs(operators=("shared",), unbind_barrier=2)
    smsc = sims.by_name["shared"]
    clients = [
        SmppClient(
            BindConfig(
                name=f"b{i}",
                host="127.0.0.1",
                port=smsc.port,
                system_id="tocsin",
                password="secret",
                unbind_timeout_s=0.3,
            )
        )
        for i in range(2)
    ]
    for client in clients:
        await client.start()
        await client.wait_bound(timeout=10)
    for client in clients:
        await client.close()
    assert (smsc.unbinds_received, smsc.unbinds) == (2, 0)

"""Cell broadcast benchmark: M alerts to 3 simulated operators' CBCs, one down for the whole run.

`python -m bench.cellbroadcast --alerts 200` (or `make bench-cellbroadcast M=...`). Starts
embedded PostgreSQL and Redis, the cell broadcast service in its own process, and three ECBE
simulators in this process (their answers carry the time they were given), the third one not
listening. Each alert is broadcast through the service's Broadcast RPC (what alerting's SendAlert
calls), then withdrawn; osmo-cbc holds one message per identifier, so alerts go one after another.

Figures (bench/results/cellbroadcast.json): accepted_p50_ms / accepted_p99_ms from the Broadcast
call to the last reachable operator's 201 for the alert's last message, withdrawn_p99_ms from the
Withdraw call to the last reachable operator's DELETE 200, lost (alerts a reachable operator never
took), duplicates (a message created twice at an operator), the down operator's requests seen as
retrying, and recovered_ms: from the down operator starting to listen to its 201 for the alert
still live then. cpu_us_per_alert is the service process's CPU over the run divided by M.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2 as pb
from tocsin.cellbroadcast.v1 import cellbroadcast_pb2_grpc

from services.kernel.process import dies_with_parent
from simulators.cbc.config import CbcConfig
from simulators.cbc.server import CbcSimulator
from stack.embedded import free_port, start_postgres, start_redis
from stack.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "cellbroadcast.json"
OPERATORS = ("proximus", "orange", "base")
TEXTS = [("nl", "Test van BE-Alert: niets te doen."), ("fr", "Test de BE-Alert : rien à faire.")]
WAIT_S = 10.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of the values, 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _serving(target: str) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                async with grpc.aio.insecure_channel(target) as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service="")
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)


async def _until(check: Callable[[], float | None], timeout: float) -> float | None:
    """perf_counter when `check()` first returns a time, None past the timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        at = check()
        if at is not None:
            return at
        await asyncio.sleep(0.002)
    return None


def _created_at(sim: CbcSimulator, n: int) -> float | None:
    """When the operator answered its n-th 201 (alerts go one after another, 2 messages each)."""
    created = [e.at for e in sim.state.events if e.status == 201]
    return created[n - 1] if len(created) >= n else None


def _deleted_at(sim: CbcSimulator, n: int) -> float | None:
    """When the operator answered its n-th DELETE with 200."""
    deleted = [e.at for e in sim.state.events if e.method == "DELETE" and e.status == 200]
    return deleted[n - 1] if len(deleted) >= n else None


def _start_service(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        dies_with_parent([sys.executable, "-m", "services.cellbroadcast"]), env=env, cwd=ROOT
    )


async def run(alerts: int) -> dict[str, float]:
    """Run the benchmark; the figures."""
    work = Path(tempfile.mkdtemp(prefix="bench-cb-"))
    pg = start_postgres(data_dir=work / "pg", fast_unsafe=True)
    rd = start_redis(data_dir=None)
    service: subprocess.Popen[bytes] | None = None
    sims = {op: CbcSimulator(CbcConfig(name=op)) for op in OPERATORS}
    down = sims["base"]
    try:
        apply_migrations(pg.url)
        for op in OPERATORS[:2]:
            await sims[op].start()
        down.port = free_port()
        urls = ",".join(f"{op}=http://127.0.0.1:{s.port}" for op, s in sims.items())
        grpc_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(
            DATABASE_URL=pg.url,
            REDIS_URL=rd.url,
            TOCSIN_INSECURE_DEV="true",
            TOCSIN_GRPC_PORT=str(grpc_port),
            TOCSIN_METRICS_PORT=str(free_port()),
            TOCSIN_CBC=urls,
            TOCSIN_RETRY_MIN_S="0.1",
            TOCSIN_RETRY_MAX_S="0.5",
            TOCSIN_ANSWER_WAIT_S="0",
            TOCSIN_LOG_LEVEL="ERROR",
        )
        service = _start_service(env)
        target = f"127.0.0.1:{grpc_port}"
        await _serving(target)
        proc = psutil.Process(service.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        accepted: list[float] = []
        withdrawn: list[float] = []
        lost = 0
        retrying = 0
        async with grpc.aio.insecure_channel(target) as channel:
            stub = cellbroadcast_pb2_grpc.CellBroadcastServiceStub(channel)
            expires = time.time() + 3600
            for i in range(alerts + 1):
                alert_id = f"bench-{i}"
                request = pb.BroadcastRequest(
                    alert_id=alert_id,
                    version=1,
                    kind="test",
                    severity="Minor",
                    urgency="Immediate",
                    certainty="Observed",
                    texts=[pb.LanguageText(language=lang, text=t) for lang, t in TEXTS],
                    expires_unix_s=expires,
                    sender="BE-Alert",
                    cells=[
                        pb.OperatorCells(operator=op, cell_ids=[f"{op}-1", f"{op}-2"])
                        for op in OPERATORS
                    ],
                )
                t0 = time.perf_counter()
                await stub.Broadcast(request)
                took = [
                    await _until(partial(_created_at, sims[op], 2 * (i + 1)), WAIT_S)
                    for op in OPERATORS[:2]
                ]
                if all(t is not None for t in took):
                    accepted.append((max(t for t in took if t is not None) - t0) * 1000)
                else:
                    lost += 1
                status = await stub.GetAlertStatus(pb.GetAlertStatusRequest(alert_id=alert_id))
                retrying += sum(
                    1 for o in status.operators if o.operator == "base" and o.state == "retrying"
                )
                if i == alerts:
                    break  # the last alert stays live for the down operator's return
                t1 = time.perf_counter()
                await stub.Withdraw(pb.WithdrawRequest(alert_id=alert_id))
                done = [
                    await _until(partial(_deleted_at, sims[op], 2 * (i + 1)), WAIT_S)
                    for op in OPERATORS[:2]
                ]
                if all(d is not None for d in done):
                    withdrawn.append((max(d for d in done if d is not None) - t1) * 1000)
            back = time.perf_counter()
            await down.start()
            recovered = await _until(partial(_created_at, down, 2), WAIT_S)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        duplicates = sum(_duplicates(s) for s in sims.values())
        return {
            "alerts": alerts,
            "operators": len(OPERATORS),
            "operators_down": 1,
            "accepted_p50_ms": round(pct(accepted, 0.5), 2),
            "accepted_p99_ms": round(pct(accepted, 0.99), 2),
            "withdrawn_p99_ms": round(pct(withdrawn, 0.99), 2),
            "lost": lost,
            "duplicates": duplicates,
            "down_operator_retrying": retrying,
            "recovered_ms": round((recovered - back) * 1000, 2) if recovered else -1.0,
            "cpu_us_per_alert": round(cpu * 1e6 / max(1, alerts), 1),
        }
    finally:
        if service is not None:
            service.terminate()
            service.wait(20)
        for sim in sims.values():
            await sim.stop()
        rd.stop()
        pg.stop()


def _duplicates(sim: CbcSimulator) -> int:
    seen: set[tuple[int, int, int]] = set()
    dup = 0
    for m in sim.state.created():
        key = (m["message_id"], m["msg_code"], m["update_nr"])
        dup += key in seen
        seen.add(key)
    return dup


def main() -> None:
    """Parse, run, print and write the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.cellbroadcast", description=__doc__)
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    figures = asyncio.run(run(args.alerts))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<24} {value}")


if __name__ == "__main__":
    main()

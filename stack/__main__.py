"""`python -m stack run` (what `make run` does) and `python -m stack migrate`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kernel.process import dies_with_parent
from services.kernel.tls import load_material
from stack import pki
from stack.embedded import ManagedProcess, start_postgres, start_redis
from stack.migrate import apply_migrations
from stack.services import (
    ROUTES,
    SERVICES,
    SIPTRUNK_ARGS,
    SIPTRUNK_PORT,
    SMSCS,
    ServiceSpec,
    module_exists,
)

logger = logging.getLogger("stack")

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    """Everything `make run` started, stopped in reverse order."""

    def __init__(self) -> None:
        self.servers: list[ManagedProcess] = []
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        """Start a child process whose output goes to var/log/<name>.log."""
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log:
            popen = subprocess.Popen(
                dies_with_parent([sys.executable, *args]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        self.children.append((name, popen))

    def stop(self) -> None:
        """SIGTERM every child, wait for them, then stop the stores."""
        for _, popen in reversed(self.children):
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, popen in reversed(self.children):
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", name)
                popen.kill()
                popen.wait()
        for server in reversed(self.servers):
            server.stop()

    def dead_child(self) -> str | None:
        """The name of a child that exited on its own, if any."""
        for name, popen in self.children:
            if popen.poll() is not None:
                return name
        return None


def _wait_serving(spec: ServiceSpec, stack: Stack, tls_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    target = f"127.0.0.1:{spec.grpc_port}"
    material = load_material(tls_dir)
    creds = grpc.ssl_channel_credentials(material.ca, material.key, material.cert)
    options = [("grpc.ssl_target_name_override", spec.name)]
    with grpc.secure_channel(target, creds, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if (dead := stack.dead_child()) is not None:
                raise SystemExit(f"{dead} exited while starting; see var/log/{dead}.log")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise SystemExit(f"{spec.name} did not report SERVING within {timeout:.0f} s")


def _stores(var: Path, stack: Stack) -> tuple[str, str]:
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not database_url:
        pg = start_postgres(data_dir=var / "pg")
        stack.servers.append(pg)
        database_url = pg.url
        print(f"  postgres     {database_url}  (embedded, data in {var / 'pg'})")
    else:
        print("  postgres     external (DATABASE_URL)")
    if not redis_url:
        redis = start_redis(data_dir=var / "redis")
        stack.servers.append(redis)
        redis_url = redis.url
        print(f"  redis        {redis_url}  (embedded, data in {var / 'redis'})")
    else:
        print("  redis        external (REDIS_URL)")
    return database_url, redis_url


def run(args: argparse.Namespace) -> int:
    """Start the whole stack, report where it listens, run until Ctrl-C or SIGTERM."""
    var = Path(args.var).resolve()
    processes = _processes(args.processes)
    stack = Stack()
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print("tocsin: starting")
    try:
        database_url, redis_url = _stores(var, stack)
        apply_migrations(database_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url)
        tls_dirs = pki.stack_identities(var / "pki", tuple(s.name for s in SERVICES))
        off = args.port_offset
        smscs = [replace(s, port=s.port + off) for s in SMSCS]
        smsc_spec = ",".join(f"{s.operator}=127.0.0.1:{s.port}" for s in smscs)
        if module_exists("simulators.smsc.__main__"):
            for smsc in smscs:
                stack.spawn(
                    f"smsc-{smsc.operator}",
                    ["-m", "simulators.smsc", "--port", str(smsc.port), "--name", smsc.operator],
                    env,
                    var / "log",
                )
                print(f"  smsc {smsc.operator:<7} 127.0.0.1:{smsc.port}  (SMPP 3.4 simulator)")
        if module_exists("simulators.siptrunk.__main__"):
            sip_port = SIPTRUNK_PORT + off
            stack.spawn(
                "siptrunk",
                ["-m", "simulators.siptrunk", "--port", str(sip_port), *SIPTRUNK_ARGS],
                env,
                var / "log",
            )
            print(f"  siptrunk     127.0.0.1:{sip_port}  (SIP trunk simulator, UDP)")
        services = [
            replace(
                s,
                grpc_port=s.grpc_port + off,
                metrics_port=s.metrics_port + off,
                env={k: _shift(v, off) for k, v in s.env.items()},
            )
            for s in SERVICES
            if s.exists()
        ]
        for spec in services:
            count = processes.get(spec.name, 1)
            for k in range(count):
                service_env = dict(env)
                service_env.update(
                    TOCSIN_GRPC_PORT=str(spec.grpc_port),
                    # Processes after the first export their metrics 10, 20, ... ports further on.
                    TOCSIN_METRICS_PORT=str(spec.metrics_port + EXTRA_METRICS_STEP * k),
                    TOCSIN_SMSC=smsc_spec,
                    TOCSIN_ROUTES=ROUTES,
                    TOCSIN_TLS_DIR=str(tls_dirs[spec.name]),
                    **spec.env,
                )
                if count > 1:
                    service_env["TOCSIN_REUSE_PORT"] = "true"
                name = spec.name if k == 0 else f"{spec.name}-{k + 1}"
                stack.spawn(name, ["-m", spec.module], service_env, var / "log")
        for spec in services:
            _wait_serving(spec, stack, tls_dirs["stack"])
            print(
                f"  {spec.name:<12} grpc 127.0.0.1:{spec.grpc_port}  "
                f"metrics http://127.0.0.1:{spec.metrics_port}/metrics  SERVING"
            )
        print(f"tocsin: ready; logs in {var / 'log'}; Ctrl-C stops everything")
        sys.stdout.flush()
        if args.demo and module_exists("stack.demo"):
            demo = importlib.import_module("stack.demo")
            demo.run_demo(alerting=f"127.0.0.1:{50051 + off}", var=var)
        if args.exit_when_ready:
            return 0
        while True:
            if (dead := stack.dead_child()) is not None:
                print(f"tocsin: {dead} exited; stopping (see var/log/{dead}.log)")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ntocsin: stopping" + (" (SIGTERM)" if stopping else ""))
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("tocsin: stopped")


#: Port distance between the metrics endpoints of a service's processes.
EXTRA_METRICS_STEP = 10


def _processes(values: list[str]) -> dict[str, int]:
    """`--processes alerting=2` options as {service: count}; SystemExit naming a bad one."""
    known = {s.name for s in SERVICES}
    counts: dict[str, int] = {}
    for value in values:
        name, _, count = value.partition("=")
        if name not in known or not count.isdigit() or not 1 <= int(count) <= 9:
            raise SystemExit(
                f"--processes {value!r}: expected SERVICE=N with N from 1 to 9 and SERVICE one of"
                f" {', '.join(sorted(known))}"
            )
        counts[name] = int(count)
    return counts


def _shift(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}" if port.isdigit() else address


def migrate(_args: argparse.Namespace) -> int:
    """Apply migrations to DATABASE_URL (the Helm hook runs this)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("tocsin: DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = apply_migrations(url)
    print(f"tocsin: {len(applied)} migration(s) applied")
    return 0


def main() -> int:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start stores, simulators and services")
    run_p.add_argument("--var", default=str(ROOT / "var"), help="folder for data and logs")
    run_p.add_argument("--no-demo", dest="demo", action="store_false", help="skip the demo")
    run_p.add_argument("--exit-when-ready", action="store_true", help="stop once SERVING")
    run_p.add_argument(
        "--port-offset", type=int, default=0, help="added to every port, to run a second stack"
    )
    run_p.add_argument(
        "--processes",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of a service on one port (SO_REUSEPORT), e.g. alerting=2",
    )
    run_p.set_defaults(func=run)
    sub.add_parser("migrate", help="apply migrations to DATABASE_URL").set_defaults(func=migrate)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

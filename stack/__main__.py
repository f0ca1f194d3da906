"""`python -m stack run` (what `make run` does) and `python -m stack migrate`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from services.kernel.operators import dump_operators
from stack import pki, seed
from stack.migrate import apply_migrations
from stack.services import (
    BOUNCE_PORT,
    CAPFEED_PORT,
    RELAY_PORT,
    SERVICES,
    module_exists,
    operators,
    simulators,
)
from stack.supervisor import Supervisor, SupervisorError, own_terminal

ROOT = Path(__file__).resolve().parent.parent


def _stores(var: Path, supervisor: Supervisor) -> tuple[str, str]:
    """DATABASE_URL and REDIS_URL if set, else embedded servers with their data in `var`."""
    database_url = supervisor.postgres(data_dir=var / "pg", external=os.environ.get("DATABASE_URL"))
    redis_url = supervisor.redis(data_dir=var / "redis", external=os.environ.get("REDIS_URL"))
    for store, url, variable, folder in (
        ("postgres", database_url, "DATABASE_URL", "pg"),
        ("redis", redis_url, "REDIS_URL", "redis"),
    ):
        embedded = f"{url}  (embedded, data in {var / folder})"
        print(f"  {store:<13} {f'external ({variable})' if os.environ.get(variable) else embedded}")
    return database_url, redis_url


class Stopping(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the stack stops because it was asked to (a KeyboardInterrupt, so that
    asyncio and `except Exception` let it through as they let Ctrl-C through)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.reason = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def run(args: argparse.Namespace) -> int:
    """Start the whole stack, report where it listens, run until Ctrl-C or SIGTERM."""
    with own_terminal():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    var = Path(args.var).resolve()
    processes = _processes(args.processes)
    supervisor = Supervisor(log_dir=var / "log")

    def on_signal(signum: int, _frame: object) -> None:
        # Children have process groups of their own: this signal reached the supervisor only.
        raise Stopping(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("tocsin: starting")
    try:
        database_url, redis_url = _stores(var, supervisor)
        apply_migrations(database_url)
        seed.demo_cell_sites(database_url, operators=tuple(op.name for op in operators()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url)
        tls_dirs = pki.stack_identities(var / "pki", tuple(s.name for s in SERVICES))
        # The audit chain's key lives beside the certificates, not in the database.
        env["TOCSIN_AUDIT_KEY"] = pki.secret(var / "pki" / "audit.key")
        off = args.port_offset
        ops = operators(offset=off)
        operators_file = var / "operators.toml"
        operators_file.parent.mkdir(parents=True, exist_ok=True)
        operators_file.write_text(dump_operators(ops), encoding="utf-8")
        for sim in simulators(ops, offset=off):
            if sim.exists():
                args_ = ["-m", sim.module, "--port", str(sim.port), *sim.args]
                supervisor.spawn(sim.name, args_, env=env)
                print(f"  {sim.name:<13} 127.0.0.1:{sim.port}  (simulator)")
        if module_exists("simulators.smtp.__main__"):
            # Addresses starting with `bounce` are accepted, then bounced to the e-mail service.
            relay_args = ["--port", str(RELAY_PORT + off), "--bounce-pattern", "^bounce"]
            relay_args += ["--bounce-to", f"127.0.0.1:{BOUNCE_PORT + off}"]
            supervisor.spawn("smtp-relay", ["-m", "simulators.smtp", *relay_args], env=env)
            print(f"  {'smtp-relay':<13} 127.0.0.1:{RELAY_PORT + off}  (simulator)")
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
                    TOCSIN_OPERATORS_FILE=str(operators_file),
                    TOCSIN_TLS_DIR=str(tls_dirs[spec.name]),
                    TOCSIN_SMTP_PORT=str(RELAY_PORT + off),
                    TOCSIN_SMTP_TLS="none",
                    TOCSIN_BOUNCE_PORT=str(BOUNCE_PORT + off),
                    **spec.env,
                )
                if count > 1:
                    service_env["TOCSIN_REUSE_PORT"] = "true"
                name = spec.name if k == 0 else f"{spec.name}-{k + 1}"
                supervisor.spawn(name, ["-m", spec.module], env=service_env)
        for spec in services:
            address = f"127.0.0.1:{spec.grpc_port}"
            supervisor.wait_serving(spec.name, address, tls_dir=tls_dirs["stack"])
            print(
                f"  {spec.name:<13} grpc 127.0.0.1:{spec.grpc_port}  "
                f"metrics http://127.0.0.1:{spec.metrics_port}/metrics  SERVING"
            )
        if module_exists("services.capfeed.__main__"):
            feed = f"127.0.0.1:{CAPFEED_PORT + off}"
            feed_env = dict(env, TOCSIN_CAPFEED_PORT=str(CAPFEED_PORT + off))
            feed_env["TOCSIN_CAPFEED_BASE_URL"] = f"http://{feed}"
            supervisor.spawn("capfeed", ["-m", "services.capfeed"], env=feed_env)
            print(f"  {'capfeed':<13} http://{feed}/cap/feed.atom  (public CAP feed)")
        print(f"tocsin: ready; logs in {var / 'log'}; Ctrl-C stops everything")
        sys.stdout.flush()
        if args.demo and module_exists("stack.demo"):
            demo = importlib.import_module("stack.demo")
            demo.run_demo(alerting=f"127.0.0.1:{50051 + off}", var=var)
        if args.exit_when_ready:
            return 0
        while True:
            if (dead := supervisor.dead_child()) is not None:
                print(f"tocsin: {dead} exited on its own; stopping (see var/log/{dead}.log)")
                return 1
            time.sleep(0.5)
    except Stopping as stop:
        print(f"\ntocsin: stopping, as asked ({stop.reason})")
        return 0
    except SupervisorError as exc:
        print(f"tocsin: {exc}; stopping")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
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
    """`host:port` with the port moved; any other value (a number of seconds) as it is."""
    host, colon, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}" if colon and port.isdigit() else address


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

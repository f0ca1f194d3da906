"""`make run`'s supervisor: every service SERVING, and Ctrl-C stops it cleanly, leaving nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from stack.services import SERVICES


def _processes_mentioning(text: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True, check=False)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


def _start(var: Path, offset: int) -> tuple[subprocess.Popen[str], str]:
    """`python -m stack run` on shifted ports; its output up to `tocsin: ready` (or its end)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    proc = subprocess.Popen(
        [
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
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("tocsin: ready"):
            break
    return proc, "".join(lines)


def _port_taken(var: Path) -> bool:
    """Whether a service of a stack that did not start found its port taken by another socket."""
    return any("Failed to bind" in log.read_text() for log in (var / "log").glob("*.log"))


@pytest.mark.timeout(180)
def test_run_serves_every_service_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    # Shifted ports lie in the ephemeral range, where any client socket of this machine may sit:
    # a stack that could not bind is started again on other ports (the supervisor's own report
    # of it is what the first assertion below shows when it is something else).
    for attempt in range(3):
        var = tmp_path / f"var{attempt}"
        offset = random.randrange(1000, 9000, 10)
        proc, output = _start(var, offset)
        if "tocsin: ready" in output or not _port_taken(var):
            break
        proc.communicate(timeout=60)
    try:
        assert "tocsin: ready" in output, output
        for spec in SERVICES:
            if spec.exists():
                assert f"{spec.name:<12} grpc 127.0.0.1:{spec.grpc_port + offset}" in output
                assert "SERVING" in output
        assert _processes_mentioning(str(var)), "the embedded stores should be running"
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 3 + sum(1 for s in SERVICES if s.exists())
        alerting = [p for p in descendants if "services.alerting" in p.cmdline()]
        assert len(alerting) == 2, "--processes alerting=2 runs two alerting processes"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: to every process of the foreground group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "tocsin: stopping, as asked (Ctrl-C)" in rest
    assert "exited on its own" not in rest
    assert "tocsin: stopped" in rest
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

"""`make run`'s supervisor: every service SERVING, and Ctrl-C leaves no process behind."""

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


@pytest.mark.timeout(180)
def test_run_serves_every_service_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    offset = random.randrange(1000, 9000, 10)
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
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("tocsin: ready"):
                break
        output = "".join(lines)
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
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
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

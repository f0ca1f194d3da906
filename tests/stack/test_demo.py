"""`make run`'s demo: seeded, sent and watched by itself, every demo SMS delivered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stack.demo import CALLS, OUTCOME
from stack.running import dead_logs, port_taken, random_offset
from stack.supervisor import ROOT

OUTCOME_LINE = re.compile(
    rf"^{OUTCOME}: targeted (\d+), delivered (\d+), failed (\d+), units charged (\d+),", re.M
)
CALLS_LINE = re.compile(rf"^{CALLS}: targeted (\d+), answered (\d+), failed (\d+)$", re.M)


@pytest.mark.timeout(240)
def test_the_demo_delivers_every_sms_and_the_stack_stops(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    for attempt in range(3):  # again on other ports if a socket of the machine took one
        var = tmp_path / f"var{attempt}"
        command = ["-m", "stack", "run", "--var", str(var), "--port-offset", str(random_offset())]
        done = subprocess.run(
            [sys.executable, *command, "--exit-when-ready"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
            check=False,
        )
        if done.returncode == 0 or not port_taken(var):
            break
    output = done.stdout + done.stderr + dead_logs(var)
    assert done.returncode == 0, output
    match = OUTCOME_LINE.search(done.stdout)
    assert match, output
    targeted, delivered, failed, units = map(int, match.groups())
    assert targeted >= 1000, output
    assert (delivered, failed) == (targeted, 0), output
    # Some citizens are called on their landline: every call ends answered or failed (a number
    # busy or unanswered at every attempt), and each answered call is one unit, as each SMS is.
    calls = CALLS_LINE.search(done.stdout)
    assert calls, output
    called, answered, unanswered = map(int, calls.groups())
    assert called >= 20, output
    assert answered + unanswered == called, output
    assert answered >= called // 2, output
    assert units == targeted + answered, output
    # The information line for the alert: requested, acknowledged and opened by the simulator.
    assert re.search(r"^demo: information line \S+ requested", done.stdout, re.M), output
    assert "demo: information line acknowledged, number 1771" in done.stdout, output
    assert "demo: information line open, number 1771" in done.stdout, output
    assert "tocsin: stopped" in done.stdout

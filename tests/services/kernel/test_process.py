"""A child started through dies_with_parent ends when its parent is killed, even by SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

PARENT = """
import subprocess, sys, time
from services.kernel.process import dies_with_parent
child = subprocess.Popen(dies_with_parent([sys.executable, "-c", "import time; time.sleep(60)"]))
print(child.pid, flush=True)
time.sleep(60)
"""


def test_child_ends_with_a_killed_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        # setpriv execs into the command; until it has, its command line may read empty.
        deadline = time.monotonic() + 10
        while "time.sleep(60)" not in " ".join(child.cmdline()):
            assert time.monotonic() < deadline, f"the child runs {child.cmdline()}"
            time.sleep(0.02)
        parent.kill()
        parent.wait(10)
        child.wait(10)  # raises TimeoutExpired if the child outlived its parent
    finally:
        if parent.poll() is None:
            parent.kill()
        if parent.stdout is not None:
            parent.stdout.close()

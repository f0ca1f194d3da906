"""A CPU hog: busy loops on the machine's cores while a benchmark runs.

    with cpu_hog(2):          # two processes spinning until the block ends
        ...                   # the campaign whose rate share under CPU load is measured

Each hog is a Python process spinning in a loop at normal priority, so the scheduler takes time
slices from the services (and from the simulators) as any other busy work on the same cores would.
The processes are this program's own children, ended by their pid when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

#: What each hog runs: a busy loop, nothing else (no I/O, no memory).
SPIN = "while True:\n    pass\n"


def default_hogs() -> int:
    """One hog per core: every core has work that competes with the stack's."""
    return os.cpu_count() or 1


class CpuHog:
    """`processes` busy loops, from `start()` (or entering the block) to `stop()` (or its end)."""

    def __init__(self, processes: int) -> None:
        if processes < 0:
            raise ValueError(f"cpu hog processes: must be at least 0, got {processes}")
        self.processes = processes
        self._hogs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        """Pids of the hogs running now."""
        return [hog.pid for hog in self._hogs]

    def start(self) -> None:
        """Start the busy loops (once)."""
        if self._hogs:
            return
        self._hogs = [
            subprocess.Popen(
                [sys.executable, "-c", SPIN],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(self.processes)
        ]

    def stop(self) -> None:
        """End the busy loops, each by its own pid; again is a no-op."""
        hogs, self._hogs = self._hogs, []
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(timeout=10)

    def __enter__(self) -> CpuHog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def cpu_hog(processes: int) -> Iterator[list[int]]:
    """Run `processes` busy loops for the duration of the block; yield their pids."""
    with CpuHog(processes) as hog:
        yield hog.pids

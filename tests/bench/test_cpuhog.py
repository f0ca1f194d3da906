"""The CPU hog of `make bench-campaign CPU_HOG=N`: busy loops that start and are ended by pid."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from bench.cpuhog import CpuHog, cpu_hog, default_hogs


def _ours(pid: int) -> bool:
    try:
        return psutil.Process(pid).ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return False


def test_the_hogs_spin_while_the_block_runs_and_are_gone_after() -> None:
    with cpu_hog(2) as pids:
        assert len(pids) == 2
        assert all(_ours(pid) for pid in pids)
        procs = [psutil.Process(pid) for pid in pids]
        # Busy: each burns CPU rather than sleeping (bounded wait, not a timing assertion).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(sum(p.cpu_times()[:2]) >= 0.05 for p in procs):
                break
            time.sleep(0.05)
        assert all(sum(p.cpu_times()[:2]) >= 0.05 for p in procs)
    assert not any(_ours(pid) for pid in pids)


def test_stop_twice_and_no_hog() -> None:
    hog = CpuHog(0)
    hog.start()
    assert hog.pids == []
    hog.stop()
    hog.stop()
    assert default_hogs() >= 1
    with pytest.raises(ValueError, match="at least 0"):
        CpuHog(-1)

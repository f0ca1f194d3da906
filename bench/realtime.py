"""Real-time scheduling of the simulators' threads, so that busy loops beside them on the same
cores (bench/cpuhog.py) do not stall the peers whose arrival times a benchmark reads.

Shared by the campaign load test (loadtest/campaign.py: its simulators run in its own process)
and the fault bench (bench/faults.py: one SMSC simulator process per operator).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: How a process's threads may run: real-time FIFO priority 1, niced (-10), or as usual.
PRIORITIES = ("fifo", "nice", "normal")


def prioritise(priority: str, pid: int | None = None) -> str:
    """Run every thread of process `pid` (this one when None) at `priority` (one of PRIORITIES)
    where allowed, each left as it was when not permitted; return the priority its main thread
    has then. Threads the process starts later inherit their creator's."""
    if priority not in PRIORITIES:
        raise ValueError(f"priority: one of {PRIORITIES}, not {priority!r}")
    main = os.getpid() if pid is None else pid
    for task in Path(f"/proc/{'self' if pid is None else pid}/task").iterdir():
        tid = int(task.name)
        # Not permitted, or the thread ended meanwhile.
        with contextlib.suppress(OSError):
            if priority == "fifo":
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
                continue
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, tid, -10 if priority == "nice" else 0)
    if os.sched_getscheduler(main) == os.SCHED_FIFO:
        return "fifo"
    return "nice" if os.getpriority(os.PRIO_PROCESS, main) < 0 else "normal"

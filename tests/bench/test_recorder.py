"""The recorder replay bench runs end to end and reports what it measured."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bench.conftest import run_bench


def test_a_small_replay_delivers_every_recipient_and_reports_each_phase(tmp_path: Path) -> None:
    out = tmp_path / "recorder.json"
    done = run_bench(
        "bench.recorder", ["--n", "2000", "--batch", "100", "--out", str(out)], timeout_s=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["delivered"] == 2000
    assert figures["fillfactor"] == 40  # the migrations' (0070)
    phases = ["queue", "submit", "receipt"]
    assert all(figures[f"{p}_cpu_us_per_recipient"] > 0 for p in phases)
    assert 0.0 <= figures["hot_update_share"] <= 1.0

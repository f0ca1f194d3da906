"""The priority benchmark, small: an emergency's messages leave before the test campaign queued
ahead of it has drained (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.conftest import run_bench


@pytest.mark.timeout(180)
def test_an_emergency_overtakes_a_queued_campaign(tmp_path: Path) -> None:
    out = tmp_path / "priority.json"
    # 3,000 test SMS at 3 x 100/s take 10 s to drain; the emergency must not wait for them.
    small = ["--n", "3000", "--emergency", "50", "--rate", "100", "--warm-s", "1"]
    # Its exit code carries the 1 s target: a figure for the benchmark, not for this test.
    done = run_bench(
        "bench.priority", [*small, "--timeout-s", "60", "--out", str(out)], timeout_s=150
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["emergency_recipients"] == 50
    assert figures["queued_ahead"] > 0
    # Every emergency message was handed over while test messages were still waiting.
    assert figures["emergency_all_sms_ms"] is not None
    assert figures["sms_handed_over"] < 3000 + 50

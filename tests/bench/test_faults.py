"""The fault-injection benchmark, small: every fault injected, nothing lost or stale (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.faults import FAULTS, main


def test_a_small_campaign_survives_every_injected_fault(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    small = "--n 6000 --rate 100 --fault-s 2 --normal-s 1.5 --recovery-max-s 20 --stall-s 60"
    code = main([*small.split(), "--out", str(out)])
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert figures["faults_injected"] == list(FAULTS)
    assert figures["lost"] == 0
    assert figures["stale_sent"] == 0
    for key in ("duplicates_over_bound", "max_recovery_s", "min_other_operators_rate_share"):
        assert key in figures
    for fault in figures["faults"]:
        assert set(fault) >= {
            "lost",
            "duplicates",
            "stale_sent",
            "recovery_s",
            "other_operators_rate_share",
        }

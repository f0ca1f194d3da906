"""The fault-injection benchmark, small: every fault of a default run injected, nothing lost or
stale, duplicates within the window of what each fault killed or cut (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.faults import DEFAULT_FAULTS, FAULTS, main


def test_a_small_campaign_survives_every_injected_fault(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    # 12,000 SMS at 300/s last about 40 s: long enough for every fault of 2 s and its recovery.
    small = (
        "--n 12000 --rate 100 --fault-s 2 --normal-s 1.5 --recovery-max-s 15 --stall-s 60"
        " --max-in-flight 1000"
    )
    code = main([*small.split(), "--out", str(out)])
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert figures["faults_injected"] == list(DEFAULT_FAULTS)
    assert figures["lost"] == 0
    assert figures["stale_sent"] == 0
    assert figures["duplicates_over_bound"] == 0
    for key in ("max_recovery_s", "min_other_operators_rate_share"):
        assert key in figures
    for fault in figures["faults"]:
        assert set(fault) >= {
            "lost",
            "duplicates",
            "duplicates_bound",
            "stale_sent",
            "recovery_s",
            "other_operators_rate_share",
        }


def test_every_default_fault_is_registered() -> None:
    assert set(DEFAULT_FAULTS) <= set(FAULTS)
    assert "redis_lost" in FAULTS

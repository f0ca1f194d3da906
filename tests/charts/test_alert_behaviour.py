"""The alert rules fire on the situations they are for, checked by `promtool test rules`."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import ROOT, Manifest, by_kind
from tests.charts.test_alert_rules import alerts

SCENARIOS = Path(__file__).with_name("alert_scenarios.yaml")


def promtool() -> str:
    """Return promtool (Debian package `prometheus`, or `make promtool`), or skip saying how."""
    found = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / "var" / "bin"))
    if found is None:
        pytest.skip("promtool not found: `make promtool` fetches it from the Debian package")
    return found


def test_alerts_fire_when_and_only_when_they_should(
    default_manifests: list[Manifest], tmp_path: Path
) -> None:
    tool = promtool()
    (rule_set,) = by_kind(default_manifests, "PrometheusRule").values()
    groups: list[dict[str, Any]] = copy.deepcopy(rule_set["spec"]["groups"])
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    scenarios = yaml.safe_load(SCENARIOS.read_text(encoding="utf-8"))
    scenarios["rule_files"] = ["rules.yaml"]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(scenarios), encoding="utf-8")
    done = subprocess.run(
        [tool, "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_scenario(default_manifests: list[Manifest]) -> None:
    scenarios = yaml.safe_load(SCENARIOS.read_text(encoding="utf-8"))
    covered = {case["alertname"] for test in scenarios["tests"] for case in test["alert_rule_test"]}
    assert covered == set(alerts(default_manifests))


def test_every_alert_has_a_scenario_where_it_stays_quiet() -> None:
    """Firing is half of it: each rule is also shown quiet on a harmless case next to it."""
    scenarios = yaml.safe_load(SCENARIOS.read_text(encoding="utf-8"))
    quiet: set[str] = set()
    firing: set[str] = set()
    for test in scenarios["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
            # A case that fires for some series and not for others is quiet for those.
            if case["exp_alerts"] and len(test["input_series"]) > len(case["exp_alerts"]):
                quiet.add(case["alertname"])
    assert firing == quiet

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


def test_every_alert_has_a_scenario() -> None:
    scenarios = yaml.safe_load(SCENARIOS.read_text(encoding="utf-8"))
    covered = {case["alertname"] for test in scenarios["tests"] for case in test["alert_rule_test"]}
    rules = (ROOT / "charts" / "tocsin" / "templates" / "prometheusrule.yaml").read_text("utf-8")
    assert covered == set(re_alerts(rules))


def re_alerts(template: str) -> list[str]:
    """Return the alert names declared in the PrometheusRule template."""
    return [line.split(":", 1)[1].strip() for line in template.splitlines() if "- alert:" in line]

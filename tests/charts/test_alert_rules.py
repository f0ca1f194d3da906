"""The alert rules cover what must wake someone, and each links to its runbook."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.charts.conftest import ROOT, Manifest, Render, by_kind

OPERATIONS = ROOT / "docs" / "operations.md"
PAGING = {
    "TocsinSmppBindDown",
    "TocsinDeliveryFailureRatioHigh",
    "TocsinChannelFailureRatioHigh",
    "TocsinStreamLagGrowing",
    "TocsinRateLimiterFallback",
    "TocsinDependencyDown",
    "TocsinNotServing",
    "TocsinGrpcErrorRatioHigh",
    "TocsinInfoLineNotOpen",
}
TICKETS = {"TocsinStreamPendingHigh", "TocsinSmsThrottled"}


def alerts(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Return the alert rules of the rendered PrometheusRule by name."""
    (rule_set,) = by_kind(manifests, "PrometheusRule").values()
    return {
        rule["alert"]: rule
        for group in rule_set["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def runbook_anchors() -> set[str]:
    """Return the GitHub anchors of the level-3 headings of docs/operations.md."""
    text = OPERATIONS.read_text(encoding="utf-8")
    return {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^### (.+)$", text, flags=re.MULTILINE)
    }


def test_paging_and_ticket_alerts_are_all_there(default_manifests: list[Manifest]) -> None:
    rules = alerts(default_manifests)
    assert set(rules) == PAGING | TICKETS
    for name, rule in rules.items():
        expected = "critical" if name in PAGING else "warning"
        assert rule["labels"]["severity"] == expected, name
        assert rule["for"], name


def test_every_alert_links_to_a_runbook_section(default_manifests: list[Manifest]) -> None:
    anchors = runbook_anchors()
    for name, rule in alerts(default_manifests).items():
        notes = rule["annotations"]
        assert notes["summary"], name
        assert notes["description"], name
        url = notes["runbook_url"]
        assert url.endswith(f"docs/operations.md#{name.lower()}"), url
        assert name.lower() in anchors, f"docs/operations.md has no '### {name}' section"


def test_rules_keep_prometheus_templates_for_alertmanager(
    default_manifests: list[Manifest],
) -> None:
    summary = alerts(default_manifests)["TocsinSmppBindDown"]["annotations"]["summary"]
    assert summary == "SMPP bind {{ $labels.operator }}/{{ $labels.bind }} is down"


def test_rules_only_see_their_own_namespace(default_manifests: list[Manifest]) -> None:
    for name, rule in alerts(default_manifests).items():
        selectors = re.findall(r"tocsin_\w+\{([^}]*)\}", rule["expr"])
        assert selectors, name
        assert all('namespace="tocsin"' in s for s in selectors), name


@pytest.mark.parametrize(
    ("setting", "alert", "fragment"),
    [
        ("alerts.smppBindDownFor=7m", "TocsinSmppBindDown", "for=7m"),
        ("alerts.deliveryFailureRatio=0.25", "TocsinDeliveryFailureRatioHigh", "> 0.25"),
        ("alerts.streamPendingHigh=12345", "TocsinStreamPendingHigh", "> 12345"),
        ("alerts.grpcErrorRatio=0.2", "TocsinGrpcErrorRatioHigh", "> 0.2"),
    ],
)
def test_thresholds_come_from_values(
    render: Render, setting: str, alert: str, fragment: str
) -> None:
    rule = alerts(render(set_values=[setting]))[alert]
    if fragment.startswith("for="):
        assert rule["for"] == fragment.removeprefix("for=")
    else:
        assert fragment in rule["expr"]


def test_alerts_can_be_left_out(render: Render) -> None:
    assert by_kind(render(set_values=["alerts.enabled=false"]), "PrometheusRule") == {}

"""The alert rules cover what must wake someone, and each links to its runbook."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.charts.conftest import HTTP_SERVICES, ROOT, SERVICES, Manifest, Render, by_kind

OPERATIONS = ROOT / "docs" / "operations.md"
PAGING = {
    "TocsinServiceDown",
    "TocsinChannelStalled",
    "TocsinBacklogDrainSlow",
    "TocsinStreamOldestEntryOld",
    "TocsinReceiptsMissing",
    "TocsinDeliveryFailureRatioHigh",
    "TocsinChannelFailureRatioHigh",
    "TocsinOperatorBindsDown",
    "TocsinFirstMessageBudgetBurn",
    "TocsinReachBudgetBurn",
    "TocsinDatastoreDown",
    "TocsinRateLimiterFallback",
    "TocsinDependencyDown",
    "TocsinNotServing",
    "TocsinGrpcErrorRatioHigh",
    "TocsinInfoLineNotOpen",
    "TocsinEmailRelayDown",
}
TICKETS = {
    "TocsinSmppBindDown",
    "TocsinSmsThrottled",
    "TocsinEmailBounceRatioHigh",
    "TocsinFirstMessageSlowBudgetBurn",
    "TocsinReachSlowBudgetBurn",
    "TocsinAuditChainUnverified",
}


def alerts(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Return the alert rules of the rendered PrometheusRule by name (the last of a name)."""
    return {rule["alert"]: rule for rule in all_alerts(manifests)}


def all_alerts(manifests: list[Manifest]) -> list[dict[str, Any]]:
    """Return every alert rule, TocsinServiceDown once per service included."""
    (rule_set,) = by_kind(manifests, "PrometheusRule").values()
    return [
        rule for group in rule_set["spec"]["groups"] for rule in group["rules"] if "alert" in rule
    ]


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


def test_rules_only_see_their_own_namespace_and_release(default_manifests: list[Manifest]) -> None:
    for rule in all_alerts(default_manifests):
        name = rule["alert"]
        selectors = re.findall(r"\b[a-z_]+\{([^}]*)\}", rule["expr"])
        assert selectors, name
        assert all('namespace="tocsin"' in s for s in selectors), name
        # Our own targets carry the release (ServiceMonitor relabeling); kube-state-metrics' not.
        own = re.findall(r"\b(?:tocsin_\w+|redis_\w+|up)\{([^}]*)\}", rule["expr"])
        assert all('release="tocsin"' in s for s in own), name


def test_every_aggregation_keeps_the_namespace(default_manifests: list[Manifest]) -> None:
    for rule in all_alerts(default_manifests):
        for by in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
            assert "namespace" in by.split(", "), f"{rule['alert']}: by ({by})"


def test_every_sms_service_and_more_has_a_down_rule(default_manifests: list[Manifest]) -> None:
    down = [r for r in all_alerts(default_manifests) if r["alert"] == "TocsinServiceDown"]
    assert {r["labels"]["service"] for r in down} == set(SERVICES) | set(HTTP_SERVICES)
    sms = next(r for r in down if r["labels"]["service"] == "sms")
    assert 'absent(up{namespace="tocsin", release="tocsin", job="tocsin-sms"} == 1)' in sms["expr"]
    assert 'deployment="tocsin-sms"' in sms["expr"]


@pytest.mark.parametrize(
    ("setting", "alert", "fragment"),
    [
        ("alerts.smppBindDownFor=7m", "TocsinSmppBindDown", "for=7m"),
        ("alerts.deliveryFailureRatio=0.25", "TocsinDeliveryFailureRatioHigh", "> 0.25"),
        ("alerts.backlogDrainSeconds=12345", "TocsinBacklogDrainSlow", "> 12345"),
        ("alerts.slo.reachObjective=0.9", "TocsinReachBudgetBurn", "> 1.44"),
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


def test_one_datastore_outage_is_one_page(default_manifests: list[Manifest]) -> None:
    (config,) = by_kind(default_manifests, "AlertmanagerConfig").values()
    names = set(alerts(default_manifests))
    rules = config["spec"]["inhibitRules"]
    for rule in rules:
        for matcher in [*rule["sourceMatch"], *rule["targetMatch"]]:
            assert matcher["name"] == "alertname"
            assert set(matcher["value"].split("|")) <= names, matcher["value"]
        assert "namespace" in rule["equal"]
    (outage,) = [r for r in rules if r["sourceMatch"][0]["value"] == "TocsinDatastoreDown"]
    inhibited = set(outage["targetMatch"][0]["value"].split("|"))
    # Everything a Redis outage trips, but the outage itself, is silenced behind it.
    assert {
        "TocsinDependencyDown",
        "TocsinNotServing",
        "TocsinRateLimiterFallback",
        "TocsinServiceDown",
        "TocsinChannelStalled",
    } <= inhibited
    assert "TocsinDatastoreDown" not in inhibited


def test_a_channel_service_down_carries_its_channel_for_inhibition(
    default_manifests: list[Manifest],
) -> None:
    down = {
        r["labels"]["service"]: r["labels"]
        for r in all_alerts(default_manifests)
        if r["alert"] == "TocsinServiceDown"
    }
    assert down["sms"]["channel"] == "sms"
    assert down["voice"]["channel"] == "voice"
    assert "channel" not in down["alerting"]


def test_the_audit_chain_is_verified_on_a_schedule(default_manifests: list[Manifest]) -> None:
    (cron,) = by_kind(default_manifests, "CronJob").values()
    assert cron["metadata"]["name"] == "tocsin-audit-verify"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    (main,) = job["template"]["spec"]["containers"]
    assert main["command"][-3:] == ["services.alerting.cli", "audit-verify", "--offline"]
    (env,) = main["env"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "tocsin-datastores", "key": "DATABASE_URL"}
    rule = alerts(default_manifests)["TocsinAuditChainUnverified"]
    assert 'cronjob="tocsin-audit-verify"' in rule["expr"]


def test_the_stream_exporter_is_scraped_with_the_services(
    default_manifests: list[Manifest],
) -> None:
    svc = by_kind(default_manifests, "Service")["tocsin-stream-exporter"]
    assert svc["metadata"]["labels"]["tocsin.io/metrics"] == "true"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["metrics"]
    deployment = by_kind(default_manifests, "Deployment")["tocsin-stream-exporter"]
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--check-streams=tocsin:stream:*" in main["args"]
    (monitor,) = by_kind(default_manifests, "ServiceMonitor").values()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert {"action": "replace", "targetLabel": "release", "replacement": "tocsin"} in endpoint[
        "relabelings"
    ]

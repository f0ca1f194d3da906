"""Dashboards and alert rules use only the metric names of docs/metrics.md, in valid PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest

from tests.charts.conftest import CHART, ROOT, Manifest, by_kind

CONTRACT = ROOT / "docs" / "metrics.md"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
#: Grafana's interval variables, replaced by a plain duration before parsing.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "3h"}
CONTRACT_ROW = re.compile(r"^\|\s*`(tocsin_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|")
METRIC = re.compile(r"\btocsin_[a-zA-Z0-9_]+")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$")


EXTERNAL_ROW = re.compile(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w+)\s*\|.*\|.*\|.*\|$")
#: A vector selector: a metric name directly followed by its matchers (every query has some).
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


def external() -> set[str]:
    """Return the names of the section "From other exporters" of docs/metrics.md."""
    text = CONTRACT.read_text(encoding="utf-8")
    section = text[text.index("## From other exporters") :]
    return {m.group(1) for line in section.splitlines() if (m := EXTERNAL_ROW.match(line))}


def global_gauges() -> set[str]:
    """Return the gauges docs/metrics.md marks **global** (every replica exports the same)."""
    return {
        match.group(1)
        for line in CONTRACT.read_text(encoding="utf-8").splitlines()
        if (match := CONTRACT_ROW.match(line)) and "**global**" in line
    }


def contract() -> dict[str, str]:
    """Return metric name -> type from the tables of docs/metrics.md."""
    found = {}
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        match = CONTRACT_ROW.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """Yield (where, PromQL) for every panel query and query variable of every dashboard."""
    for path in DASHBOARDS:
        board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = LABEL_VALUES.match(var["definition"])
                assert inner, f"{path.name}: variable {var['name']} is not label_values(...)"
                yield f"{path.name}: variable {var['name']}", inner.group(1)


def rule_expressions(manifests: list[Manifest]) -> Iterator[tuple[str, str]]:
    """Yield (alert, PromQL) for every rule of the rendered PrometheusRule."""
    for rule_set in by_kind(manifests, "PrometheusRule").values():
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                yield rule.get("alert") or rule["record"], rule["expr"]


def metric_names(expr: str, known: dict[str, str]) -> set[str]:
    """Return the tocsin_ metric names in `expr`, histogram series folded to their family."""
    names = set()
    for name in METRIC.findall(QUOTED.sub('""', expr)):
        for suffix in HISTOGRAM_SUFFIXES:
            family = name.removesuffix(suffix)
            if family != name and known.get(family) == "histogram":
                name = family
                break
        names.add(name)
    return names


def as_promql(expr: str) -> str:
    """Return a Grafana expression with its interval variables replaced by durations."""
    for variable, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, duration)
    return expr


@pytest.fixture(scope="module")
def expressions(default_manifests: list[Manifest]) -> list[tuple[str, str]]:
    """Every expression of the dashboards and the alert rules."""
    found = [*dashboard_expressions(), *rule_expressions(default_manifests)]
    assert len(found) > 40, "too few expressions: is the chart rendering its dashboards and rules?"
    return found


def test_the_contract_lists_metrics() -> None:
    known = contract()
    assert "tocsin_sms_submitted_total" in known
    assert known["tocsin_sms_receipt_latency_seconds"] == "histogram"


def test_every_metric_used_is_in_the_contract(expressions: list[tuple[str, str]]) -> None:
    known = contract()
    unknown = {
        f"{where}: {name}"
        for where, expr in expressions
        for name in metric_names(expr, known)
        if name not in known
    }
    assert not unknown, "not in docs/metrics.md:\n" + "\n".join(sorted(unknown))


def test_histograms_are_read_through_their_buckets(expressions: list[tuple[str, str]]) -> None:
    known = contract()
    for where, expr in expressions:
        bare = QUOTED.sub('""', expr)
        for name, kind in known.items():
            if kind == "histogram":
                assert not re.search(rf"\b{name}\b(?!_)", bare), f"{where}: {name} without suffix"


def test_every_expression_is_valid_promql(expressions: list[tuple[str, str]]) -> None:
    errors = []
    for where, expr in expressions:
        try:
            promql_parser.parse(as_promql(expr))
        except ValueError as exc:
            errors.append(f"{where}: {exc}\n    {expr}")
    assert not errors, "\n".join(errors)


def test_the_name_scan_finds_histogram_families_and_ignores_label_values() -> None:
    known = {"tocsin_x_seconds": "histogram", "tocsin_y_total": "counter"}
    expr = 'rate(tocsin_x_seconds_bucket{a="tocsin_not_a_metric"}[5m]) / tocsin_y_total_sum'
    assert metric_names(expr, known) == {"tocsin_x_seconds", "tocsin_y_total_sum"}


def test_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "channels.json",
        "dispatch-overview.json",
        "infoline.json",
        "operator-links.json",
        "service-health.json",
    ]


def test_every_series_outside_tocsin_is_listed_as_another_exporters(
    expressions: list[tuple[str, str]],
) -> None:
    known = set(contract()) | external()
    assert {"up", "redis_stream_group_last_delivered_id"} <= external()
    unknown = set()
    for where, expr in expressions:
        for name in SELECTOR.findall(QUOTED.sub('""', expr)):
            family = name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in known:
                    family = name.removesuffix(suffix)
            if family not in known:
                unknown.add(f"{where}: {name}")
    assert not unknown, "in no table of docs/metrics.md:\n" + "\n".join(sorted(unknown))


def summed_global_gauges(expr: str, gauges: set[str]) -> set[str]:
    """Return the global gauges `expr` sums directly (sum, sum by/without, over the selector)."""
    bare = QUOTED.sub('""', expr)
    found = set()
    for name in gauges:
        pattern = rf"\bsum\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*{name}\b"
        if re.search(pattern, bare):
            found.add(name)
    return found


def test_no_query_sums_a_gauge_every_replica_exports_alike(
    expressions: list[tuple[str, str]],
) -> None:
    gauges = global_gauges()
    assert {"tocsin_alerts_live", "tocsin_channel_backlog_recipients"} <= gauges
    summed = {
        f"{where}: {name}"
        for where, expr in expressions
        for name in summed_global_gauges(expr, gauges)
    }
    assert not summed, "sums a global gauge (use max):\n" + "\n".join(sorted(summed))


def test_the_sum_check_sees_what_it_must() -> None:
    gauges = {"tocsin_alerts_live"}
    assert summed_global_gauges('sum by (kind) (tocsin_alerts_live{a="b"})', gauges) == gauges
    assert summed_global_gauges("sum(tocsin_alerts_live)", gauges) == gauges
    assert not summed_global_gauges('max by (kind) (tocsin_alerts_live{a="b"})', gauges)
    assert not summed_global_gauges("sum(max by (pod) (tocsin_alerts_live))", gauges)

"""Scaling within the operators' limits: SMPP sessions, rollouts, KEDA, spread, priority."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from typing import Any

import pytest

from services.channel import keys as channel_keys
from services.channel.codec import PRIORITIES
from services.kernel import keys
from services.kernel.operators import parse_operators
from tests.charts.conftest import (
    PRODUCTION_VALUES,
    ROOT,
    HelmError,
    Manifest,
    Render,
    by_kind,
    component,
)


def _load_validator() -> Any:
    """charts/tools/validate_manifests.py, a script outside the packages, loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "validate_manifests", ROOT / "charts" / "tools" / "validate_manifests.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_crd = _load_validator().check_crd


def operators(manifests: list[Manifest]) -> dict[str, dict[str, object]]:
    """The operators file the sms service reads, as rendered."""
    text = by_kind(manifests, "ConfigMap")["tocsin-config"]["data"]["operators.toml"]
    found: dict[str, dict[str, object]] = tomllib.loads(text)["operators"]
    return found


def max_sessions() -> dict[str, int]:
    """maxSessions per operator as values-production.yaml promises them."""
    text = PRODUCTION_VALUES.read_text(encoding="utf-8")
    names = re.findall(r"^    (\w+):\n      host:", text, flags=re.MULTILINE)
    limits = [int(n) for n in re.findall(r"maxSessions: (\d+)", text)]
    assert len(names) == len(limits) == 3
    return dict(zip(names, limits, strict=True))


def test_sms_is_sized_by_its_operators_not_by_cpu(
    default_manifests: list[Manifest], production_manifests: list[Manifest]
) -> None:
    for manifests in (default_manifests, production_manifests):
        assert "tocsin-sms" not in by_kind(manifests, "HorizontalPodAutoscaler")
        assert "tocsin-sms" not in by_kind(manifests, "ScaledObject")
        assert isinstance(component(manifests, "Deployment", "sms")["spec"]["replicas"], int)


def test_sms_rollouts_never_surge_a_pod_that_would_open_more_binds(
    production_manifests: list[Manifest],
) -> None:
    strategy = component(production_manifests, "Deployment", "sms")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    # Others surge: a pod away before its replacement is ready is capacity lost mid-alert.
    other = component(production_manifests, "Deployment", "alerting")["spec"]["strategy"]
    assert other["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": "25%"}


def test_production_sessions_stay_within_every_operator_limit_through_a_rollout(
    production_manifests: list[Manifest],
) -> None:
    replicas = component(production_manifests, "Deployment", "sms")["spec"]["replicas"]
    pdb = component(production_manifests, "PodDisruptionBudget", "sms")["spec"]
    # A rollout (maxUnavailable 1, no surge) or a drain (maxUnavailable 1) has at most one pod
    # going away, still holding its binds while it drains, beside `replicas` bound pods.
    peak_pods = replicas + pdb["maxUnavailable"]
    limits = max_sessions()
    for name, op in operators(production_manifests).items():
        binds = op["binds"]
        assert isinstance(binds, list)
        assert peak_pods * len(binds) <= limits[name], name
    # The promise of the issue: proximus, 4 binds, 24 sessions, reached and not passed.
    assert peak_pods * len(operators(production_manifests)["proximus"]["binds"]) == 24  # type: ignore[arg-type]


def test_every_sms_pod_holds_each_operator_limit_itself(
    production_manifests: list[Manifest],
) -> None:
    """Node drains pass the arithmetic above: the pods hold the limit in Redis (docs/sms.md)."""
    text = by_kind(production_manifests, "ConfigMap")["tocsin-config"]["data"]["operators.toml"]
    parsed = parse_operators(tomllib.loads(text), source="operators.toml")
    assert {op.name: op.max_sessions for op in parsed} == max_sessions()


@pytest.mark.parametrize("values", [(), (PRODUCTION_VALUES,)])
def test_a_rollout_takes_the_next_old_pod_only_once_the_last_one_has_drained(
    render: Render, values: tuple[Any, ...]
) -> None:
    """The Deployment controller takes the next old pod once the new one is available, and does
    not wait for the old one, which keeps its binds while it drains (up to its grace period). A
    new pod available only after a whole grace period keeps that to one draining pod."""
    manifests = render(values=list(values))
    sms = component(manifests, "Deployment", "sms")["spec"]
    grace = sms["template"]["spec"]["terminationGracePeriodSeconds"]
    assert sms["minReadySeconds"] >= grace
    # Other services hold no sessions: their rollouts are not slowed down.
    assert "minReadySeconds" not in component(manifests, "Deployment", "voice")["spec"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("services.sms.replicas=6", "smpp.operators.base: (replicas 6 + 1 draining) x 2 binds"),
        ("services.sms.autoscaling.enabled=true", "not by an autoscaler"),
        ("services.sms.keda.enabled=true", "not by an autoscaler"),
    ],
)
def test_values_that_could_pass_an_operator_limit_are_refused(
    render: Render, setting: str, message: str
) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        render(
            values=[PRODUCTION_VALUES],
            set_values=[setting, "services.sms.keda.stream=s", "services.sms.keda.consumerGroup=g"],
        )


@pytest.mark.parametrize("service", ["voice", "email"])
def test_stream_consumers_scale_on_their_stream_with_keda_in_production(
    production_manifests: list[Manifest], default_manifests: list[Manifest], service: str
) -> None:
    scaled = by_kind(production_manifests, "ScaledObject")[f"tocsin-{service}"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == f"tocsin-{service}"
    triggers = scaled["spec"]["triggers"]
    # The streams and group the service really consumes: one stream per lane
    # (services/channel/keys.py), the bulk one keeping the plain name of services/kernel/keys.py.
    assert getattr(keys, f"{service.upper()}_STREAM") == channel_keys.stream(service)
    assert sorted(t["metadata"]["stream"] for t in triggers) == sorted(
        channel_keys.stream(service, p) for p in PRIORITIES
    )
    for trigger in triggers:
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"]["consumerGroup"] == getattr(keys, f"{service.upper()}_GROUP")
        assert trigger["authenticationRef"] == {"name": "tocsin-redis"}
    # KEDA owns the HPA and the replica count.
    assert f"tocsin-{service}" not in by_kind(production_manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in component(production_manifests, "Deployment", service)["spec"]
    assert check_crd(scaled, "keda.sh_scaledobjects.yaml") == []
    assert by_kind(default_manifests, "ScaledObject") == {}


def test_the_keda_crd_check_refuses_what_keda_would(production_manifests: list[Manifest]) -> None:
    scaled = by_kind(production_manifests, "ScaledObject")["tocsin-voice"]
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 20  # metadata values are strings
    scaled["spec"]["maxReplicas"] = 3  # the field is maxReplicaCount
    errors = check_crd(scaled, "keda.sh_scaledobjects.yaml")
    assert any("lagCount" in e for e in errors), errors
    assert any("maxReplicas" in e for e in errors), errors


def test_keda_needs_an_address(render: Render) -> None:
    with pytest.raises(HelmError, match=re.escape("keda.redisAddress")):
        render(set_values=["services.voice.keda.enabled=true"])


def test_zone_spread_is_enforced_where_it_matters(production_manifests: list[Manifest]) -> None:
    def zone_rule(service: str) -> str:
        pod = component(production_manifests, "Deployment", service)["spec"]["template"]["spec"]
        (zone,) = [
            c
            for c in pod["topologySpreadConstraints"]
            if c["topologyKey"] == "topology.kubernetes.io/zone"
        ]
        return str(zone["whenUnsatisfiable"])

    assert zone_rule("sms") == "DoNotSchedule"
    assert zone_rule("alerting") == "DoNotSchedule"
    assert zone_rule("targeting") == "ScheduleAnyway"


def test_a_priority_class_reaches_the_pods(render: Render) -> None:
    manifests = render(set_values=["serviceDefaults.priorityClassName=tocsin-critical"])
    pod = component(manifests, "Deployment", "sms")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "tocsin-critical"
    default = render()
    assert (
        "priorityClassName"
        not in component(default, "Deployment", "sms")["spec"]["template"]["spec"]
    )

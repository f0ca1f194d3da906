"""The chart's NetworkPolicies allow exactly the calls the architecture draws, both ways.

What is drawn is read from the one table that authorises calls (`services/kernel/access.py`),
method by method over the generated protos: a service may be reached by the chart services
that table admits to any of its methods, and by nobody else.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from google.protobuf import descriptor_pool

from services.kernel import access
from tests.charts.conftest import (
    PRODUCTION_VALUES,
    SERVICES,
    HelmError,
    Manifest,
    Render,
    by_kind,
    component,
)

DNS, POSTGRESQL, REDIS = 53, 5432, 6379
#: Pods of the release that are not services, and the datastore port each may reach.
JOBS = {"stream-exporter": {REDIS}, "audit-verify": {POSTGRESQL}, "migrate": {POSTGRESQL}}
#: The services the architecture's picture draws calls between (others add their own).
CORE = {"alerting", "targeting", "sms", "voice", "cellbroadcast"}


def _methods(service: str) -> list[str] | None:
    """Full method names of the gRPC services in package tocsin.<service>.v1; None: no proto."""
    package = f"tocsin.{service}.v1"
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError:
        return None
    for info in pkgutil.iter_modules(module.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    pool = descriptor_pool.Default()
    found: list[str] = []
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.endswith("_pb2"):
            continue
        file = pool.FindFileByName(f"{package.replace('.', '/')}/{info.name[:-4]}.proto")
        for svc in file.services_by_name.values():
            found += [f"/{svc.full_name}/{m.name}" for m in svc.methods]
    return found or None


def drawn_callers(service: str) -> set[str] | None:
    """Chart services access.py admits to some method of `service`; None: public or no gRPC."""
    methods = _methods(service)
    if methods is None:
        return None
    callers: set[str] = set()
    for method in methods:
        rule = access.rule_for(method)
        if rule.anyone:
            return None
        callers |= {name for name in SERVICES if rule.admits([name]) is not None}
    return callers


def _peers(rule: dict[str, Any], key: str) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in rule.get(key, [])
        if "podSelector" in peer and "namespaceSelector" not in peer
    }


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def ingress_from(policy: Manifest, port: int) -> set[str] | None:
    """Release components allowed in on `port`; None: any source."""
    rules = [r for r in policy["spec"]["ingress"] if port in _ports(r)]
    if any("from" not in r for r in rules):
        return None
    return set().union(*(_peers(r, "from") for r in rules))


def egress_to(policy: Manifest) -> dict[str, set[int]]:
    """Release components a pod may call, with the ports."""
    out: dict[str, set[int]] = {}
    for rule in policy["spec"]["egress"]:
        for peer in _peers(rule, "to"):
            out.setdefault(peer, set()).update(_ports(rule))
    return out


def open_ports(policy: Manifest) -> set[int]:
    """Ports of egress rules that name no release component (DNS, datastores, outside)."""
    return {
        port for rule in policy["spec"]["egress"] if not _peers(rule, "to") for port in _ports(rule)
    }


@pytest.mark.parametrize("manifests_of", ["default", "production"])
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_called_by_its_drawn_callers_only(
    default_manifests: list[Manifest],
    production_manifests: list[Manifest],
    manifests_of: str,
    service: str,
) -> None:
    manifests = default_manifests if manifests_of == "default" else production_manifests
    grpc_port, metrics_port = SERVICES[service]
    policy = component(manifests, "NetworkPolicy", service)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    drawn = drawn_callers(service)
    if service == "alerting":
        assert drawn is None  # the public API: users bring a JWT
        assert ingress_from(policy, grpc_port) is None
    elif drawn is None:
        pytest.skip(f"{service} has no gRPC API of its own (a public HTTP service)")
    else:
        assert ingress_from(policy, grpc_port) == drawn, service
    # Only the ports it serves are open at all (a channel may add its own: extraIngress).
    served = {grpc_port, metrics_port, 8086}
    opened = set().union(*(_ports(r) for r in policy["spec"]["ingress"]))
    assert served <= opened
    if service in CORE:
        assert opened == served


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_calls_exactly_the_services_that_admit_it(
    default_manifests: list[Manifest], service: str
) -> None:
    policy = component(default_manifests, "NetworkPolicy", service)
    expected = {
        callee: {ports[0]}
        for callee, ports in SERVICES.items()
        if callee != service and service in (drawn_callers(callee) or set())
    }
    assert egress_to(policy) == expected
    # Both ends agree: each callee's ingress names this service.
    for callee in expected:
        callee_policy = component(default_manifests, "NetworkPolicy", callee)
        assert service in (ingress_from(callee_policy, SERVICES[callee][0]) or set())


def test_the_drawn_calls_are_the_architecture(default_manifests: list[Manifest]) -> None:
    calls = {
        service: set(egress_to(component(default_manifests, "NetworkPolicy", service))) & CORE
        for service in CORE
    }
    assert calls == {
        "alerting": {"targeting", "sms", "voice", "cellbroadcast"},
        "cellbroadcast": {"targeting"},
        "targeting": set(),
        "sms": set(),
        "voice": set(),
    }


@pytest.mark.parametrize(
    ("service", "outside"),
    [
        ("alerting", {443}),  # the information line's provider
        ("targeting", set()),
        ("sms", {2775}),  # SMPP
        ("voice", {5060, 10000}),  # SIP, RTP from 10000 to 20000
        ("cellbroadcast", {443}),  # CBCs, LB-SMS platforms
    ],
)
def test_each_service_reaches_dns_its_datastores_and_its_own_endpoints_only(
    default_manifests: list[Manifest], service: str, outside: set[int]
) -> None:
    policy = component(default_manifests, "NetworkPolicy", service)
    assert open_ports(policy) == {DNS, POSTGRESQL, REDIS} | outside
    dns = [r for r in policy["spec"]["egress"] if DNS in _ports(r)]
    assert dns[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_the_other_pods_reach_only_the_datastore_they_read(
    default_manifests: list[Manifest],
) -> None:
    policies = by_kind(default_manifests, "NetworkPolicy")
    for job, stores in JOBS.items():
        policy = policies[f"tocsin-{job}"]
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == job
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert egress_to(policy) == {}
        assert open_ports(policy) == {DNS} | stores, job
    assert policies["tocsin-audit-verify"]["spec"]["ingress"] == []
    assert policies["tocsin-migrate"]["spec"]["ingress"] == []
    (exporter,) = policies["tocsin-stream-exporter"]["spec"]["ingress"]
    assert _ports(exporter) == {9121}


def test_every_pod_of_the_release_is_under_a_policy(default_manifests: list[Manifest]) -> None:
    selectors = [
        p["spec"]["podSelector"]["matchLabels"]
        for p in by_kind(default_manifests, "NetworkPolicy").values()
    ]
    for workload in default_manifests:
        spec = {
            "Deployment": lambda m: m["spec"]["template"],
            "Job": lambda m: m["spec"]["template"],
            "CronJob": lambda m: m["spec"]["jobTemplate"]["spec"]["template"],
        }.get(workload["kind"])
        if spec is None:
            continue
        labels = spec(workload)["metadata"]["labels"]
        matching = [s for s in selectors if s.items() <= labels.items()]
        assert len(matching) == 1, workload["metadata"]["name"]


def test_datastores_and_operators_take_configured_addresses(render: Render) -> None:
    manifests = render(
        set_values=[
            "networkPolicy.egress.postgresql.to[0].ipBlock.cidr=10.20.0.0/24",
            "networkPolicy.egress.redis.port=6380",
            "networkPolicy.egress.external.sms[0].to[0].ipBlock.cidr=192.0.2.0/24",
            "networkPolicy.egress.external.sms[0].ports[0].port=2776",
            "smpp.operators.proximus.host=smsc.example",
            "smpp.operators.proximus.port=2776",
        ]
    )
    rules = component(manifests, "NetworkPolicy", "sms")["spec"]["egress"]
    by_port = {port: rule for rule in rules for port in _ports(rule)}
    assert by_port[POSTGRESQL]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert 6380 in by_port
    assert REDIS not in by_port
    assert by_port[2776]["to"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]


def test_an_smsc_the_policy_would_cut_off_is_refused(render: Render) -> None:
    with pytest.raises(
        HelmError, match=r"opens no TCP port 3000: the SMSC of smpp.operators.orange"
    ):
        render(
            set_values=[
                "smpp.operators.orange.host=smsc.example",
                "smpp.operators.orange.port=3000",
            ]
        )


def test_production_values_render_the_same_policies(render: Render) -> None:
    production = render(values=[PRODUCTION_VALUES])
    assert len(by_kind(production, "NetworkPolicy")) == len(by_kind(production, "Deployment")) + 2

"""The chart renders what each service needs to run, scale and be watched on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.charts.conftest import (
    HTTP_SERVICES,
    PRODUCTION_VALUES,
    SERVICES,
    HelmError,
    Manifest,
    Render,
    by_kind,
    component,
    container,
)

PER_SERVICE_KINDS = ("Deployment", "Service", "PodDisruptionBudget")
#: Services the CPU HPA scales by default (sms is sized by its operators, voice may use KEDA).
CPU_SCALED = ("alerting", "targeting", "voice", "cellbroadcast")
SENTINELS = {
    "credentials.jwtKey": "sentinel-jwt-key-that-is-at-least-32-characters",
    "smpp.password": "sentinel-shared-smpp-password",
    "smpp.operators.proximus.systemId": "sentinel-system-id",
    "smpp.operators.proximus.password": "sentinel-smpp-password",
    "datastores.databaseUrl": "postgresql://tocsin:sentinel-db-password@db:5432/tocsin",
    "datastores.redisUrl": "redis://:sentinel-redis-password@redis:6379/0",
}
WITH_OPERATOR = [
    *(f"{key}={value}" for key, value in SENTINELS.items()),
    "smpp.operators.proximus.host=smsc.example",
]


def env_of(manifests: list[Manifest], service: str) -> dict[str, str]:
    """Return the environment a service's ConfigMap gives it."""
    data: dict[str, str] = component(manifests, "ConfigMap", service)["data"]
    return data


def cpu_millis(quantity: str) -> float:
    """Return a CPU quantity in millicores."""
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def memory_mib(quantity: str) -> float:
    """Return a memory quantity (Mi or Gi) in MiB."""
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("kind", PER_SERVICE_KINDS)
def test_each_service_gets_its_own_workload_objects(
    default_manifests: list[Manifest], service: str, kind: str
) -> None:
    manifest = component(default_manifests, kind, service)
    assert manifest["metadata"]["name"] == f"tocsin-{service}"


@pytest.mark.parametrize("service", CPU_SCALED)
def test_each_cpu_scaled_service_gets_its_hpa(
    default_manifests: list[Manifest], service: str
) -> None:
    hpa = component(default_manifests, "HorizontalPodAutoscaler", service)
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"tocsin-{service}"


@pytest.mark.parametrize("service", SERVICES)
def test_selectors_point_at_the_service_pods_only(
    default_manifests: list[Manifest], service: str
) -> None:
    deployment = component(default_manifests, "Deployment", service)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = component(default_manifests, "Service", service)
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == service
    pdb = component(default_manifests, "PodDisruptionBudget", service)
    assert pdb["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    if service not in CPU_SCALED:
        return
    hpa = component(default_manifests, "HorizontalPodAutoscaler", service)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }


@pytest.mark.parametrize(("service", "ports"), SERVICES.items())
def test_probes_ask_grpc_health_on_the_service_port(
    default_manifests: list[Manifest], service: str, ports: tuple[int, int]
) -> None:
    grpc_port, metrics_port = ports
    main = container(component(default_manifests, "Deployment", service))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["grpc"]["port"] == grpc_port, probe
        assert set(main[probe]) - {"grpc"} <= {"periodSeconds", "failureThreshold"}, probe
    extra = {"email": {"bounces": 2526}}.get(service, {})
    declared = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert declared == {"grpc": grpc_port, "metrics": metrics_port, **extra}
    svc_ports = {
        p["name"]: p["port"]
        for p in component(default_manifests, "Service", service)["spec"]["ports"]
    }
    assert svc_ports == {"grpc": grpc_port, "metrics": metrics_port, **extra}


@pytest.mark.parametrize(("service", "ports"), HTTP_SERVICES.items())
def test_an_http_service_is_probed_and_scraped_over_its_http_port(
    default_manifests: list[Manifest], service: str, ports: tuple[int, int]
) -> None:
    http_port, metrics_port = ports
    main = container(component(default_manifests, "Deployment", service))
    assert [(p["name"], p["containerPort"]) for p in main["ports"]] == [("http", http_port)]
    paths = {probe: main[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe")}
    assert paths == {"startupProbe": "/readyz", "readinessProbe": "/readyz"}
    # Liveness never follows PostgreSQL: an outage must not restart the feed.
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    svc_ports = {
        p["name"]: (p["port"], p["targetPort"])
        for p in component(default_manifests, "Service", service)["spec"]["ports"]
    }
    assert svc_ports == {"http": (http_port, "http"), "metrics": (metrics_port, "http")}
    env = by_kind(default_manifests, "ConfigMap")[f"tocsin-{service}"]["data"]
    assert env[f"TOCSIN_{service.upper()}_PORT"] == str(http_port)
    assert "TOCSIN_GRPC_PORT" not in env
    # Nobody dials an HTTP service over gRPC.
    assert (
        f"TOCSIN_{service.upper()}_ADDR"
        not in by_kind(default_manifests, "ConfigMap")["tocsin-alerting"]["data"]
    )


def test_the_bounce_receiver_is_reachable_by_the_relay(default_manifests: list[Manifest]) -> None:
    policy = component(default_manifests, "NetworkPolicy", "email")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert 2526 in ports
    env = by_kind(default_manifests, "ConfigMap")["tocsin-email"]["data"]
    assert (env["TOCSIN_BOUNCE_HOST"], env["TOCSIN_BOUNCE_PORT"]) == ("0.0.0.0", "2526")


@pytest.mark.parametrize(("service", "ports"), SERVICES.items())
def test_each_service_runs_its_module_with_its_ports_from_a_configmap(
    default_manifests: list[Manifest], service: str, ports: tuple[int, int]
) -> None:
    deployment = component(default_manifests, "Deployment", service)
    main = container(deployment)
    assert main["command"] == ["python", "-m", f"services.{service}"]
    config_name = component(default_manifests, "ConfigMap", service)["metadata"]["name"]
    assert {"configMapRef": {"name": config_name}} in main["envFrom"]
    env = env_of(default_manifests, service)
    assert env["TOCSIN_GRPC_PORT"] == str(ports[0])
    assert env["TOCSIN_METRICS_PORT"] == str(ports[1])
    # Probes come from the kubelet and scrapes from Prometheus: loopback would refuse both.
    assert env["TOCSIN_HOST"] == "0.0.0.0"


def test_secrets_are_never_inlined_in_configmaps_or_pod_specs(render: Render) -> None:
    manifests = render(set_values=WITH_OPERATOR)
    for manifest in manifests:
        if manifest["kind"] == "Secret":
            continue
        text = json.dumps(manifest)
        for key, value in SENTINELS.items():
            assert value not in text, (
                f"{key} leaks into {manifest['kind']}/{manifest['metadata']['name']}"
            )
    stored = {
        value
        for secret in by_kind(manifests, "Secret").values()
        for value in secret["stringData"].values()
    }
    assert set(SENTINELS.values()) <= stored


def test_each_service_gets_only_the_credentials_it_needs(render: Render) -> None:
    manifests = render(set_values=WITH_OPERATOR)
    for service in SERVICES:
        env = {e["name"]: e for e in container(component(manifests, "Deployment", service))["env"]}
        assert all("secretKeyRef" in entry["valueFrom"] for entry in env.values()), service
        credentials = set(env) - {"DATABASE_URL", "REDIS_URL"}
        if service == "sms":
            assert credentials == {
                "TOCSIN_SMPP_SYSTEM_ID",
                "TOCSIN_SMPP_PASSWORD",
                "TOCSIN_SMPP_PROXIMUS_SYSTEM_ID",
                "TOCSIN_SMPP_PROXIMUS_PASSWORD",
            }
        elif service == "alerting":
            assert credentials == {"TOCSIN_JWT_KEY"}
        else:
            assert not credentials, service
    operators = by_kind(manifests, "ConfigMap")["tocsin-config"]["data"]["operators.toml"]
    assert 'host = "smsc.example"' in operators
    assert env_of(manifests, "sms")["TOCSIN_OPERATORS_FILE"] == "/etc/tocsin/operators.toml"
    assert "TOCSIN_OPERATORS_FILE" not in env_of(manifests, "voice")


def test_services_find_each_other_by_their_kubernetes_service(
    default_manifests: list[Manifest],
) -> None:
    env = env_of(default_manifests, "alerting")
    for service, (grpc_port, _) in SERVICES.items():
        assert env[f"TOCSIN_{service.upper()}_ADDR"] == f"tocsin-{service}:{grpc_port}"


def test_existing_secrets_replace_the_chart_secrets(
    production_manifests: list[Manifest],
) -> None:
    assert by_kind(production_manifests, "Secret") == {}
    refs = set()
    for service in SERVICES:
        for entry in container(component(production_manifests, "Deployment", service))["env"]:
            refs.add(entry["valueFrom"]["secretKeyRef"]["name"])
    assert refs == {"tocsin-datastores", "tocsin-credentials"}


def test_a_generated_signing_key_is_random_and_long(render: Render) -> None:
    first, second = (
        by_kind(render(), "Secret")["tocsin-credentials"]["stringData"]["TOCSIN_JWT_KEY"]
        for _ in range(2)
    )
    assert len(first) >= 64
    assert first != second


@pytest.mark.parametrize("service", SERVICES)
def test_production_raises_replicas_and_limits(
    default_manifests: list[Manifest], production_manifests: list[Manifest], service: str
) -> None:
    if service in ("alerting", "targeting", "cellbroadcast"):
        small = component(default_manifests, "HorizontalPodAutoscaler", service)["spec"]
        large = component(production_manifests, "HorizontalPodAutoscaler", service)["spec"]
        assert large["minReplicas"] > small["minReplicas"]
        assert large["maxReplicas"] > small["maxReplicas"]
    small_res = container(component(default_manifests, "Deployment", service))["resources"]
    large_res = container(component(production_manifests, "Deployment", service))["resources"]
    for bound in ("requests", "limits"):
        assert cpu_millis(large_res[bound]["cpu"]) > cpu_millis(small_res[bound]["cpu"])
        assert memory_mib(large_res[bound]["memory"]) > memory_mib(small_res[bound]["memory"])


@pytest.mark.parametrize("manifests", ["default_manifests", "production_manifests"])
def test_disruption_budgets_take_one_pod_at_a_time_and_never_block_on_unready_ones(
    request: pytest.FixtureRequest, manifests: str
) -> None:
    rendered: list[Manifest] = request.getfixturevalue(manifests)
    for service in SERVICES:
        pdb = component(rendered, "PodDisruptionBudget", service)["spec"]
        assert pdb["maxUnavailable"] == 1, service
        assert "minAvailable" not in pdb, service
        assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow", service


@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_non_root_on_a_read_only_root(
    default_manifests: list[Manifest], service: str
) -> None:
    pod = component(default_manifests, "Deployment", service)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    main = container({"spec": {"template": {"spec": pod}}})
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert set(main["resources"]) == {"requests", "limits"}


def test_grace_period_comes_from_values_and_reaches_the_process(render: Render) -> None:
    manifests = render(
        set_values=[
            "serviceDefaults.terminationGracePeriodSeconds=90",
            "serviceDefaults.preStopSleepSeconds=7",
        ]
    )
    for service in SERVICES:
        deployment = component(manifests, "Deployment", service)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 90
        assert container(deployment)["lifecycle"]["preStop"] == {"sleep": {"seconds": 7}}
        # The process drains within what is left after the preStop sleep, with margin to spare.
        assert env_of(manifests, service)["TOCSIN_SHUTDOWN_GRACE_S"] == "78"


def test_the_hpa_owns_the_replica_count(render: Render, default_manifests: list[Manifest]) -> None:
    for service in CPU_SCALED:
        assert "replicas" not in component(default_manifests, "Deployment", service)["spec"]
    fixed = render(
        set_values=["services.voice.autoscaling.enabled=false", "services.voice.replicas=4"]
    )
    assert component(fixed, "Deployment", "voice")["spec"]["replicas"] == 4
    assert "tocsin-voice" not in by_kind(fixed, "HorizontalPodAutoscaler")
    assert "tocsin-alerting" in by_kind(fixed, "HorizontalPodAutoscaler")


def test_a_service_is_added_or_removed_by_values_alone(render: Render) -> None:
    manifests = render(
        set_values=[
            "services.email.grpcPort=50056",
            "services.email.metricsPort=9106",
            "services.voice.enabled=false",
        ]
    )
    for kind in PER_SERVICE_KINDS:
        assert "tocsin-email" in by_kind(manifests, kind)
        assert "tocsin-voice" not in by_kind(manifests, kind)
    probe = container(component(manifests, "Deployment", "email"))["readinessProbe"]
    assert probe["grpc"]["port"] == 50056


def test_service_monitor_scrapes_every_metrics_port_keeping_service_labels(
    render: Render, default_manifests: list[Manifest]
) -> None:
    (monitor,) = by_kind(default_manifests, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in SERVICES:
        labels = component(default_manifests, "Service", service)["metadata"]["labels"]
        assert selector.items() <= labels.items(), service
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    off = render(set_values=["metrics.serviceMonitor.enabled=false", "alerts.enabled=false"])
    assert not [m for m in off if m["apiVersion"].startswith("monitoring.coreos.com/")]


def test_migrations_run_after_install_and_before_upgrade_and_the_secret_is_no_hook(
    default_manifests: list[Manifest],
) -> None:
    (job,) = by_kind(default_manifests, "Job").values()
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    # post-install: the datastores Secret (a regular object) exists by then; pre-upgrade: the
    # previous release's Secret still does.
    assert hooks == {"post-install", "pre-upgrade"}
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["command"] == ["python", "-m", "stack", "migrate"]
    env = {entry["name"]: entry for entry in main["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    # A hook Secret is deleted and made again on every upgrade: pods starting then fail.
    secret = by_kind(default_manifests, "Secret")["tocsin-datastores"]["metadata"]
    assert "helm.sh/hook" not in secret.get("annotations", {})


def test_dashboards_ship_in_a_configmap_for_the_grafana_sidecar(
    default_manifests: list[Manifest],
) -> None:
    configmap = by_kind(default_manifests, "ConfigMap")["tocsin-dashboards"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    boards: dict[str, Any] = {name: json.loads(text) for name, text in configmap["data"].items()}
    assert set(boards) == {
        "dispatch-overview.json",
        "operator-links.json",
        "service-health.json",
        "infoline.json",
        "channels.json",
    }
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)


def test_production_mounts_its_rate_limit_rules_and_they_load(
    production_manifests: list[Manifest],
) -> None:
    config = pytest.importorskip("ratelimit.config")
    rules_text = by_kind(production_manifests, "ConfigMap")["tocsin-config"]["data"][
        "ratelimit.toml"
    ]
    rules = config.Rules.from_toml(rules_text, source=str(PRODUCTION_VALUES))
    assert rules.resolve("sms:global").rate == pytest.approx(2_000_000 / 2700)
    for service in SERVICES:
        assert env_of(production_manifests, service)["TOCSIN_RATELIMIT_RULES"] == (
            "/etc/tocsin/ratelimit.toml"
        )
        mounts = container(component(production_manifests, "Deployment", service))["volumeMounts"]
        assert {"name": "config", "mountPath": "/etc/tocsin", "readOnly": True} in mounts


def test_default_values_leave_the_built_in_rate_limit_rules(
    default_manifests: list[Manifest],
) -> None:
    assert "ratelimit.toml" not in by_kind(default_manifests, "ConfigMap")["tocsin-config"]["data"]
    for service in SERVICES:
        assert "TOCSIN_RATELIMIT_RULES" not in env_of(default_manifests, service)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("services.sms.grpcport=50053", "'grpcport' not allowed"),
        ("services.sms.grpcPort=70000", "/services/sms/grpcPort"),
        ("alerts.deliveryFailureRatio=2", "/alerts/deliveryFailureRatio"),
        ("datastores.redisUrl=localhost:6379", "/datastores/redisUrl"),
        ("credentials.jwtKey=short", "/credentials/jwtKey"),
    ],
)
def test_values_schema_rejects_mistakes_before_anything_runs(
    render: Render, setting: str, complaint: str
) -> None:
    with pytest.raises(HelmError, match=complaint):
        render(set_values=[setting])


def test_a_service_without_ports_is_refused(render: Render) -> None:
    with pytest.raises(HelmError, match=r"services\.pager\.grpcPort \(or httpPort\) is required"):
        render(set_values=["services.pager.metricsPort=9110"])

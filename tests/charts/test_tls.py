"""Every service pod gets its certificate and is probed on the plaintext health port."""

from __future__ import annotations

import pytest

from tests.charts.conftest import (
    SERVICES,
    HelmError,
    Manifest,
    Render,
    by_kind,
    component,
    container,
)

HEALTH_PORT = 8086


def _pod(deployment: Manifest) -> Manifest:
    pod: Manifest = deployment["spec"]["template"]["spec"]
    return pod


def _env(deployment: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"] if "value" in e}


def _probe_ports(deployment: Manifest) -> set[int]:
    main = container(deployment)
    return {
        main[probe]["grpc"]["port"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }


def test_every_service_deployment_mounts_its_certificate_and_probes_the_health_port(
    default_manifests: list[Manifest],
) -> None:
    deployments = [
        m
        for m in by_kind(default_manifests, "Deployment").values()
        if container(m).get("command", [])[:2] == ["python", "-m"]
    ]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} >= set(
        SERVICES
    )
    for deployment in deployments:
        service = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == f"tocsin-{service}-tls"
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        env = _env(deployment)
        assert mounts["tls"]["mountPath"] == env["TOCSIN_TLS_DIR"], service
        assert mounts["tls"]["readOnly"] is True
        # A mount point inside the read-only ConfigMap volume could not be made.
        for other in mounts.values():
            if other["name"] != "tls":
                assert not env["TOCSIN_TLS_DIR"].startswith(other["mountPath"].rstrip("/") + "/")
        assert "TOCSIN_INSECURE_DEV" not in env, service
        ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
        if "http" in ports:
            # The public CAP feed speaks HTTP; TLS ends at the ingress, probes are HTTP GETs.
            main = container(deployment)
            assert all(
                main[probe]["httpGet"]["port"] == "http"
                for probe in ("startupProbe", "readinessProbe", "livenessProbe")
            ), service
            continue
        assert env["TOCSIN_HEALTH_PORT"] == str(HEALTH_PORT)
        assert _probe_ports(deployment) == {HEALTH_PORT}, service
        assert ports["health"] == HEALTH_PORT
        if service in SERVICES:
            assert ports["grpc"] == SERVICES[service][0]


def test_the_certificate_secret_is_the_one_cert_manager_fills(render: Render) -> None:
    manifests = render(
        set_values=["tls.certManager.enabled=true", "tls.certManager.issuer.name=tocsin-ca"]
    )
    for service in SERVICES:
        cert = component(manifests, "Certificate", service)
        volumes = {
            v["name"]: v for v in _pod(component(manifests, "Deployment", service))["volumes"]
        }
        assert volumes["tls"]["secret"]["secretName"] == cert["spec"]["secretName"]


def test_without_tls_pods_say_so_and_are_probed_on_the_grpc_port(render: Render) -> None:
    manifests = render(set_values=["tls.enabled=false"])
    for service, (grpc_port, _) in SERVICES.items():
        deployment = component(manifests, "Deployment", service)
        env = _env(deployment)
        assert env["TOCSIN_INSECURE_DEV"] == "true"
        assert "TOCSIN_TLS_DIR" not in env
        assert "tls" not in {v["name"] for v in _pod(deployment)["volumes"]}
        assert _probe_ports(deployment) == {grpc_port}
    policy = component(manifests, "NetworkPolicy", "sms")
    assert HEALTH_PORT not in {
        p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]
    }


def test_a_health_port_that_is_also_a_service_port_is_refused(render: Render) -> None:
    with pytest.raises(HelmError, match=r"tls\.healthPort 9103 is also a port of services\.sms"):
        render(set_values=["tls.healthPort=9103"])


def test_the_chart_never_generates_keys_a_render_cannot_keep(render: Render) -> None:
    with pytest.raises(HelmError, match=r"credentials\.auditKey is required.*helm template"):
        render(keys=False, set_values=["credentials.jwtKey=" + "j" * 40])
    with pytest.raises(HelmError, match=r"credentials\.jwtKey is required.*existingSecret"):
        render(keys=False, set_values=["credentials.auditKey=" + "a" * 40])
    given = ["credentials.jwtKey=" + "j" * 40, "credentials.auditKey=" + "a" * 40]
    for _ in range(2):  # the same on every render: tokens and the audit chain survive upgrades
        secret = by_kind(render(keys=False, set_values=given), "Secret")["tocsin-credentials"]
        assert secret["stringData"]["TOCSIN_JWT_KEY"] == "j" * 40
        assert secret["stringData"]["TOCSIN_AUDIT_KEY"] == "a" * 40
    # An existing Secret of yours needs no key in the values.
    kept = render(keys=False, set_values=["credentials.existingSecret=mine"])
    assert "tocsin-credentials" not in by_kind(kept, "Secret")


def test_audit_verification_uses_the_key_alerting_chains_with(
    default_manifests: list[Manifest],
) -> None:
    (cron,) = by_kind(default_manifests, "CronJob").values()
    (main,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    verify = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in main["env"]}
    alerting = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container(component(default_manifests, "Deployment", "alerting"))["env"]
        if "valueFrom" in e
    }
    assert verify["TOCSIN_AUDIT_KEY"] == alerting["TOCSIN_AUDIT_KEY"]
    assert verify["TOCSIN_AUDIT_KEY"]["name"] == "tocsin-credentials"

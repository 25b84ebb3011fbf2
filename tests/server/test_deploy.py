"""deploy/: the KubeRay RayService and the plain Kubernetes manifests are valid, the Serve
configs name a real application, and plain `bitfit serve` never imports Ray.

The Kubernetes schemas come offline from kubernetes-validate; the RayService CRD schema
is KubeRay's own (tests/data/kuberay/, from ray-project/kuberay at commit feeaf72f).
"""

from __future__ import annotations

import functools
import gzip
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@functools.cache
def crd_schema(name: str) -> dict:
    # The CRD is 1 MB of YAML: the C loader reads it in a fraction of the pure-Python time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(gzip.decompress((ROOT / "tests" / "data" / "kuberay" / name).read_bytes()), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def validate_pod_template(template: dict) -> None:
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template},
                                 K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")), ids=lambda p: p.name)
def test_plain_manifests_pass_the_kubernetes_schemas(path):
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any unknown or wrong field


def test_the_rayservice_passes_its_crd_schema_and_its_pods_the_kubernetes_schemas():
    (service,) = documents(ROOT / "deploy" / "kuberay" / "rayservice.yaml")
    jsonschema.validate(service, crd_schema("ray.io_rayservices.yaml.gz"))
    cluster = service["spec"]["rayClusterConfig"]
    for template in [cluster["headGroupSpec"]["template"], *[g["template"] for g in cluster["workerGroupSpecs"]]]:
        validate_pod_template(template)
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert serve_config["applications"][0]["import_path"] == "server.process.ray_app:build"


def test_a_broken_manifest_is_caught():
    """The checks above can fail: a misspelt field and a wrong type are refused."""
    (service,) = documents(ROOT / "deploy" / "kuberay" / "rayservice.yaml")
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, crd_schema("ray.io_rayservices.yaml.gz"))
    deployment = documents(ROOT / "deploy" / "kubernetes" / "bitfit.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", sorted((ROOT / "deploy" / "ray").glob("*.yaml")), ids=lambda p: p.name)
def test_serve_configs_are_valid_serve_schemas(path):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.serve.schema import ServeDeploySchema

    from server.process.settings import Settings

    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    for app in config.applications:
        assert app.import_path == "server.process.ray_app:build"
        Settings.model_validate(app.args)  # every arg is a real setting with a valid value


def test_plain_serve_never_imports_ray(tmp_path, tiny_bert_dir):
    script = f"""
import sys
from fastapi.testclient import TestClient
from server.http.app import create_app
from server.process.settings import Settings
import server.process.serve_cli, server.process.cli
with TestClient(create_app(Settings(store={str(tmp_path / 'store')!r}, backbone={str(tiny_bert_dir)!r}, device="cpu"))) as c:
    assert c.get("/readyz").status_code == 200
leaked = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not leaked, leaked
"""
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_server_pod_is_scraped_and_the_service_monitor_selects_the_service():
    deployment, service = documents(ROOT / "deploy" / "kubernetes" / "bitfit.yaml")[:2]
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    (monitor,) = documents(ROOT / "deploy" / "kubernetes" / "monitoring" / "servicemonitor.yaml")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "ServiceMonitor"
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    (ray,) = documents(ROOT / "deploy" / "kuberay" / "rayservice.yaml")
    cluster = ray["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        port = group["rayStartParams"]["metrics-export-port"]
        assert group["template"]["metadata"]["annotations"]["prometheus.io/port"] == port

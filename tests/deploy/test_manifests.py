"""deploy/: the core Kubernetes manifests validate against the Kubernetes schemas (offline, with the
PyPI package kubernetes-validate), and the KServe / container files agree with each other and with
the repository's serving settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CORE = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
#: the oldest Kubernetes minor still maintained upstream when this was written, and the newest known
VERSIONS = ("1.32.0", "latest")
MODEL = "smollm2-135m-instruct"


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _properties(path: Path) -> dict[str, str]:
    lines = [line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in lines}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", CORE, ids=[p.name for p in CORE])
def test_core_manifests_validate_against_the_kubernetes_schemas(path, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version() if version == "latest" else version
    for document in _documents(path):
        kubernetes_validate.validate(document, version, strict=True)  # raises ValidationError


def test_the_validator_refuses_a_wrong_manifest():
    """The check above can fail: a misspelt field and a wrong type are errors."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (deployment,) = _documents(DEPLOY / "kubernetes" / "deployment.yaml")
    for broken in ({**deployment, "spec": {**deployment["spec"], "replica": 2}},
                   {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}):  # fmt: skip
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_service_and_autoscaler_point_at_the_deployment():
    (deployment,) = _documents(DEPLOY / "kubernetes" / "deployment.yaml")
    (service,) = _documents(DEPLOY / "kubernetes" / "service.yaml")
    (hpa,) = _documents(DEPLOY / "kubernetes" / "hpa.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ecco-serve"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "grpc": 7070, "ts-metrics": 8082, "metrics": 8083}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert container["resources"]["requests"]["cpu"]  # the HPA's utilization needs a CPU request


def test_inference_service_uses_the_runtime_and_the_served_model_name():
    """Fields as documented for KServe v1beta1 InferenceService / v1alpha1 ServingRuntime."""
    runtime, service = _documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = service["spec"]["predictor"]
    assert set(predictor) <= {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "timeout", "model"}
    assert predictor["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")
    model = predictor["model"]
    assert set(model) == {"modelFormat", "runtime", "protocolVersion", "storageUri"}
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["args"] == ["/mnt/models"]
    env = {e["name"]: e["value"] for e in container["env"]}
    # KServe routes /v1/models/<InferenceService name>:explain to TorchServe's model of that name
    assert service["metadata"]["name"] == MODEL and env["ECCO_MODELS"] == f"{MODEL}={MODEL}.mar"


def test_container_config_keeps_the_serving_contract():
    """The cluster config differs from the local one only where a cluster must (addresses, token)."""
    local, cluster = _properties(REPO / "config.properties"), _properties(DEPLOY / "config.properties")
    for key in ("decode_input_request", "max_request_size", "max_response_size", "enable_model_api",
                "job_queue_size", "metrics_mode", "grpc_inference_port"):  # fmt: skip
        assert cluster[key] == local[key], key
    assert cluster["inference_address"] == "http://0.0.0.0:8080"
    assert cluster["management_address"].startswith("http://127.0.0.1:")  # never exposed
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/config.properties /srv/ecco/config/config.properties" in dockerfile
    assert f"--name {MODEL}" in dockerfile

"""The production deployment (deploy/), validated without a cluster.

- deploy/helm/values.yaml against the official Dagster chart's values schema (a vendored
  subset, tests/schemas/dagster_chart_values.schema.json, source noted inside);
- every Kubernetes object in it, and every GPU step's pod as the runner of the production
  environment builds it from deploy/gpu-steps.yaml, against the Kubernetes API models of the
  kubernetes client:
  each object is deserialized into its model and serialized back, so a wrong type raises and
  an unknown or misspelt field shows up as a difference;
- the files agree with each other and with the code (claims, images, modules, engines).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes.client
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

from resources import settings
from resources.artifacts import ArtifactStore
from resources.gpu_jobs import GpuJobRunner, gpu_job_runner
from resources.pod_spec import ARTIFACTS_VOLUME, SHM_VOLUME, gpu_pod_meta

DEPLOY = settings.PROJECT_DIR / "deploy"
CHART_SCHEMA = Path(__file__).parent / "schemas" / "dagster_chart_values.schema.json"
KUBERNETES_SCHEMAS = "https://kubernetesjsonschema.dev/"
GPU_JOB_MODULES = {"train": "gpu_jobs.train", "build_engine": "gpu_jobs.build_engine", "generate": "gpu_jobs.generate"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


@pytest.fixture(scope="module")
def deployment(values) -> dict:
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


@pytest.fixture(scope="module")
def gpu_steps() -> dict:
    """deploy/gpu-steps.yaml as written: what the runner's pods must carry."""
    return load_yaml(DEPLOY / "gpu-steps.yaml")


@pytest.fixture
def production_gpu_jobs(monkeypatch, deployment) -> GpuJobRunner:
    """The runner as the production code location builds it: the user deployment's environment
    (RECSYS_GPU_MODE=kubernetes, ...) and the default steps file."""
    monkeypatch.delenv("RECSYS_GPU_STEPS", raising=False)
    for name, value in deployment["env"].items():
        monkeypatch.setenv(name, value)
    return gpu_job_runner(ArtifactStore(root=str(settings.artifacts_dir())))


def kubernetes_model(data: Any, model: str) -> Any:
    """``data`` as the kubernetes client's ``model``, asserting that nothing was lost on the way."""
    client = kubernetes.client.ApiClient()
    parsed = client.deserialize(SimpleNamespace(data=json.dumps(data)), model)
    assert client.sanitize_for_serialization(parsed) == data, f"{model}: unknown or misspelt fields in {data}"
    return parsed


def gpu_pod(runner: GpuJobRunner, step: str) -> kubernetes.client.V1Pod:
    """The pod the runner submits for ``step``, as the kubernetes client's model."""
    module = GPU_JOB_MODULES[step]
    spec = runner.pod_spec(module)
    # PipesK8sClient fills in the image and the command of the one container.
    settings = runner.pod_settings(module)
    spec["containers"][0] |= {"image": settings.image, "command": [*settings.entrypoint, "python3", "-m", module]}
    return kubernetes_model({"metadata": gpu_pod_meta(module), "spec": spec}, "V1Pod")


def chart_validator() -> jsonschema.Draft7Validator:
    """The chart schema; its references to Kubernetes object schemas resolve to 'anything' here,
    because those objects are checked against the Kubernetes API models instead."""
    schema = json.loads(CHART_SCHEMA.read_text())
    documents: dict[str, dict] = {}
    for ref in re.findall(r'"\$ref": "(https://[^"]+)"', CHART_SCHEMA.read_text()):
        uri, pointer = ref.split("#", 1)
        assert uri.startswith(KUBERNETES_SCHEMAS), ref
        node = documents.setdefault(uri, {})
        for part in pointer.strip("/").split("/"):
            node = node.setdefault(part, {})  # ends in {}: the empty schema, anything goes
    registry = Registry().with_resources((uri, DRAFT7.create_resource(document)) for uri, document in documents.items())
    return jsonschema.Draft7Validator(schema, registry=registry)


# ---------------------------------------------------------------- Helm values


def test_helm_values_match_the_chart_schema(values):
    errors = sorted(chart_validator().iter_errors(values), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_chart_schema_catches_mistakes(values):
    """The validation is not vacuous: a wrong run launcher or a missing port is rejected."""
    validator = chart_validator()
    wrong_launcher = {**values, "runLauncher": {**values["runLauncher"], "type": "K8sLauncher"}}
    no_port = json.loads(json.dumps(values))
    del no_port["dagster-user-deployments"]["deployments"][0]["port"]
    assert not validator.is_valid(wrong_launcher)
    assert not validator.is_valid(no_port)


def test_user_deployment_kubernetes_objects(deployment):
    kubernetes_model(deployment["resources"], "V1ResourceRequirements")
    for volume in deployment["volumes"]:
        kubernetes_model(volume, "V1Volume")
    for mount in deployment["volumeMounts"]:
        kubernetes_model(mount, "V1VolumeMount")
    for source in deployment["envSecrets"]:
        kubernetes_model(source, "V1SecretEnvSource")
    for source in deployment["envConfigMaps"]:
        kubernetes_model(source, "V1ConfigMapEnvSource")
    for name, value in deployment["env"].items():
        kubernetes_model({"name": name, "value": value}, "V1EnvVar")


def test_run_pods_kubernetes_objects(values):
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    kubernetes_model(launcher["resources"], "V1ResourceRequirements")
    pod_spec = launcher["runK8sConfig"]["podSpecConfig"]
    kubernetes_model({**pod_spec, "containers": []}, "V1PodSpec")  # the launcher adds the container


def test_code_location_is_the_one_the_project_declares(deployment):
    module = tomllib.loads((settings.PROJECT_DIR / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    assert deployment["codeServerArgs"] == ["-m", module]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f'"-m", "{module}"' in dockerfile and f'"{deployment["port"]}"' in dockerfile
    assert 'pip install ".[spark]"' in dockerfile and "dbt parse" in dockerfile
    # Where the GPU job runner looks for the steps file by default (the project folder).
    assert "COPY deploy/gpu-steps.yaml ./deploy/gpu-steps.yaml" in dockerfile


def test_engines_are_configured_with_values_the_code_accepts(deployment):
    env = deployment["env"]
    assert env["RECSYS_CANDIDATE_ENGINE"] in ("sklearn", "spark")
    assert env["RECSYS_DBT_TARGET"] in load_yaml(settings.PROJECT_DIR / "dbt_project" / "profiles.yml")["recsys"]["outputs"]
    assert env["RECSYS_SPARK_METHOD"] in ("session", "thrift", "http")
    assert env["RECSYS_GPU_MODE"] == "kubernetes"
    assert all(isinstance(value, str) for value in env.values())  # Kubernetes env values are strings


def test_helm_and_the_plain_instance_give_run_pods_the_same_environment(deployment, values):
    """deploy/dagster.yaml (the instance without Helm) and the chart values agree on volumes and env sources."""
    launcher = load_yaml(DEPLOY / "dagster.yaml")["run_launcher"]["config"]
    assert launcher["volumes"] == deployment["volumes"]
    assert launcher["volume_mounts"] == deployment["volumeMounts"]
    assert launcher["env_config_maps"] == [source["name"] for source in deployment["envConfigMaps"]]
    assert launcher["env_secrets"] == [source["name"] for source in deployment["envSecrets"]]
    assert launcher["resources"] == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]


# The chart's dagsterDaemon.runMonitoring keys and the instance keys its template renders them to.
CHART_RUN_MONITORING = {
    "enabled": "enabled",
    "startTimeoutSeconds": "start_timeout_seconds",
    "pollIntervalSeconds": "poll_interval_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
}


def test_helm_and_the_plain_instance_monitor_runs_alike(values):
    """A crashed run is marked failed and its pool slots freed, whichever way the instance is deployed."""
    chart = values["dagsterDaemon"]["runMonitoring"]
    instance = load_yaml(DEPLOY / "dagster.yaml")["run_monitoring"]
    assert set(chart) == set(CHART_RUN_MONITORING)
    assert {CHART_RUN_MONITORING[key]: value for key, value in chart.items()} == instance
    assert instance["enabled"] and instance["free_slots_after_run_end_seconds"] > 0
    # A killed run must free the warehouse pool within a minute: detected, then its slots freed.
    assert instance["poll_interval_seconds"] * 2 + instance["free_slots_after_run_end_seconds"] <= 60
    assert instance["max_resume_run_attempts"] == 0  # the run retry policy, not a resume, reruns it


# ---------------------------------------------------------------- GPU pods


@pytest.mark.parametrize("step", sorted(GPU_JOB_MODULES))
def test_gpu_step_pod_is_a_valid_pod_on_the_gpu_pool(production_gpu_jobs, gpu_steps, step):
    pod = gpu_pod(production_gpu_jobs, step)

    (container,) = pod.spec.containers
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.spec.tolerations)
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    (term,) = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    products = term.match_expressions[0].values
    assert any("A800" in p for p in products) and any("H100" in p for p in products)
    # The step's own resources, from the file.
    expected = gpu_steps["steps"][step]
    assert container.resources.limits == {"memory": expected["memory"], "nvidia.com/gpu": str(expected["gpu_count"])}
    assert container.resources.requests == {"cpu": expected["cpu"], "memory": expected["memory"]}
    shm = next(v for v in pod.spec.volumes if v.name == SHM_VOLUME)
    assert shm.empty_dir.size_limit == expected["shm_size"]


def test_gpu_pods_share_the_orchestrators_artifact_store(production_gpu_jobs, gpu_steps, deployment):
    env = deployment["env"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    # The environment overrides the file's image, namespace and claim; they agree, so the file
    # alone describes production.
    defaults = gpu_steps["defaults"]
    assert defaults["artifacts_claim"] == env["RECSYS_ARTIFACTS_CLAIM"] == claims["recsys-artifacts"]
    assert defaults["image"] == env["RECSYS_GPU_IMAGE"] and defaults["namespace"] == env["RECSYS_GPU_NAMESPACE"]
    for step in GPU_JOB_MODULES:
        pod = gpu_pod(production_gpu_jobs, step)
        artifacts = next(v for v in pod.spec.volumes if v.name == ARTIFACTS_VOLUME)
        assert artifacts.persistent_volume_claim.claim_name == claims["recsys-artifacts"]
        (container,) = pod.spec.containers
        assert container.image == env["RECSYS_GPU_IMAGE"]
        # Mounted where the orchestrator has the artifact store (RECSYS_HOME/artifacts).
        assert {m.name: m.mount_path for m in container.volume_mounts}[ARTIFACTS_VOLUME] == mounts["recsys-artifacts"]
    assert mounts["recsys-artifacts"] == f"{env['RECSYS_HOME']}/artifacts"


def test_gpu_counts_follow_the_steps(gpu_steps):
    steps = gpu_steps["steps"]
    assert set(steps) == set(GPU_JOB_MODULES)  # every GPU job has its pod settings
    assert steps["train"]["gpu_count"] == 1  # gpu_jobs/train.py trains on one GPU (no data parallelism)
    assert steps["generate"]["gpu_count"] == 1  # one GPU per user shard: N shards -> N GPUs
    for step in steps.values():
        assert re.fullmatch(r"\d+Gi", step["memory"]) and re.fullmatch(r"\d+Gi", step["shm_size"])

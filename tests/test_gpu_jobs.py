"""The GPU job runner: mode and steps file from configuration, and the pod that production mode submits.

No cluster here: a local HTTP server stands in for the Kubernetes API server. The asset runs in
kubernetes mode through the real code path (GpuJobRunner -> PipesK8sClient -> kubernetes
client); the server records the pod the client POSTs and refuses it. The recorded manifest is
then checked against the Kubernetes OpenAPI models that the kubernetes client is generated from.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import kubernetes
import pytest

from recsys_assets.keys import ID_TOKENIZER, PROMPT_DATASET
from recsys_assets.model.assets import fine_tuned_model
from resources.artifacts import ArtifactStore
from resources.gpu_jobs import GpuJobRunner, gpu_job_runner
from resources.gpu_steps import KubernetesSettings, StepSettings, Toleration

# ---------------------------------------------------------------- schema


class SchemaError(ValueError):
    pass


def validate(manifest, model=kubernetes.client.V1Pod, where: str = "pod") -> None:
    """Check a JSON manifest against a Kubernetes OpenAPI model: every field known, every value
    of its declared type, every required field present."""
    if not isinstance(manifest, dict):
        raise SchemaError(f"{where}: expected an object, got {manifest!r}")
    attribute = {json_name: name for name, json_name in model.attribute_map.items()}
    unknown = set(manifest) - set(attribute)
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {sorted(unknown)} for {model.__name__}")
    for key, value in manifest.items():
        _check(value, model.openapi_types[attribute[key]], f"{where}.{key}")
    try:  # the generated constructors reject a missing required field
        model(**{attribute[key]: value for key, value in manifest.items()})
    except ValueError as error:
        raise SchemaError(f"{where}: {error}") from error


def _check(value, declared: str, where: str) -> None:
    if declared.startswith("list["):
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {value!r}")
        for index, item in enumerate(value):
            _check(item, declared[5:-1], f"{where}[{index}]")
    elif declared.startswith(("dict(", "dict[")):  # "dict(str, X)" or "dict[str, X]" by client version
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected a map, got {value!r}")
        for key, item in value.items():
            _check(item, declared[declared.index(",") + 1 : -1].strip(), f"{where}[{key}]")
    elif declared in PRIMITIVES:
        if not PRIMITIVES[declared](value):
            raise SchemaError(f"{where}: expected {declared}, got {value!r}")
    elif declared != "object":
        validate(value, getattr(kubernetes.client, declared), where)


PRIMITIVES = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str),
}


def test_the_schema_check_rejects_what_the_api_server_would():
    good = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    validate(good)
    misspelled = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resource": {}}]}}
    with pytest.raises(SchemaError, match="unknown field"):
        validate(misspelled)
    with pytest.raises(SchemaError, match="expected str"):  # quantities are strings in the API
        validate({"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})
    with pytest.raises(SchemaError, match="name"):
        validate({"spec": {"containers": [{"image": "i"}]}})


# ---------------------------------------------------------------- pod spec

SETTINGS = KubernetesSettings(
    image="registry.example.com/recsys-gpu:1.2",
    namespace="ml-jobs",
    node_selector={"pool": "gpu"},
    gpu_products=["NVIDIA-A800-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"],
    tolerations=[Toleration(), Toleration(key="dedicated", operator="Equal", value="ml", effect="NoExecute")],
    memory="96Gi",
    shm_size="32Gi",
    artifacts_claim="shared-artifacts",
)
STEPS = {"train": StepSettings(gpu_count=4, cpu="16", memory="128Gi")}


def kubernetes_runner(store: ArtifactStore, settings: KubernetesSettings = SETTINGS) -> GpuJobRunner:
    return GpuJobRunner(mode="kubernetes", artifacts=store, kubernetes=settings, steps=STEPS)


def test_pod_spec_asks_for_gpus_on_the_gpu_pool():
    spec = kubernetes_runner(ArtifactStore(root="/mnt/artifacts")).pod_spec("gpu_jobs.train")
    validate(spec, kubernetes.client.V1PodSpec, "spec")
    (container,) = spec["containers"]
    # The train step's entry on top of the defaults.
    assert container["resources"] == {
        "requests": {"cpu": "16", "memory": "128Gi"},
        "limits": {"memory": "128Gi", "nvidia.com/gpu": "4"},
    }
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
    ]
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["values"] == ["NVIDIA-A800-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"} and mounts["dshm"] == "/dev/shm"
    assert volumes["artifacts"]["persistentVolumeClaim"]["claimName"] == "shared-artifacts"
    assert mounts["artifacts"] == "/mnt/artifacts"


@pytest.mark.parametrize(
    ("module", "requested", "gpus", "memory"),
    [
        ("gpu_jobs.train", 2, "2", "128Gi"),  # the asset's count wins over the step's
        ("gpu_jobs.train", None, "4", "128Gi"),  # the step's
        ("gpu_jobs.generate", None, "1", "96Gi"),  # no entry: the defaults and one GPU
    ],
)
def test_gpu_count_from_the_asset_then_the_step_then_one(module, requested, gpus, memory):
    (container,) = kubernetes_runner(ArtifactStore(root="/mnt/artifacts")).pod_spec(module, requested)["containers"]
    assert container["resources"]["limits"] == {"memory": memory, "nvidia.com/gpu": gpus}


# ---------------------------------------------------------------- the real submission path


class FakeApiServer(BaseHTTPRequestHandler):
    """Records pod creations and answers them with 403, as an API server without rights would."""

    created: list = []

    def do_POST(self):  # noqa: N802 (the http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeApiServer.created.append((self.path, body))
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
        payload = json.dumps(status).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "test", "user": {"token": "test"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    FakeApiServer.created = []
    yield str(kubeconfig)
    server.shutdown()


@pytest.mark.parametrize(
    ("asset_config", "gpus"),
    [({"gpu_count": 2}, "2"), ({}, "4")],  # FineTuneConfig.gpu_count 0: the train step's count
)
def test_production_mode_submits_a_valid_gpu_pod(api_server, tmp_path, asset_config, gpus):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    instance = dg.DagsterInstance.ephemeral()
    for key, folder in ((PROMPT_DATASET, "datasets/d1"), (ID_TOKENIZER, "tokenizers/t1")):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata={"path": str(store.base / folder)}))
    # The pod mounts the store elsewhere than the orchestrator: every path is translated.
    runner = kubernetes_runner(store, SETTINGS.model_copy(update={"kubeconfig_file": api_server, "artifacts_mount_path": "/mnt/store"}))

    result = dg.materialize(
        [fine_tuned_model],
        instance=instance,
        resources={"gpu_jobs": runner, "artifacts": store},
        run_config={"ops": {"model__fine_tuned_model": {"config": asset_config}}},
        raise_on_error=False,
    )

    assert not result.success  # the stand-in API server refused the pod
    ((path, pod),) = FakeApiServer.created
    assert path == "/api/v1/namespaces/ml-jobs/pods"
    validate(pod)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/recsys-gpu:1.2"
    # Behind NVIDIA's entrypoint, which the pod's command would otherwise replace (CUDA forward compatibility).
    assert container["command"][:4] == ["/opt/nvidia/nvidia_entrypoint.sh", "python3", "-m", "gpu_jobs.train"]
    assert container["command"][container["command"].index("--dataset") + 1] == "/mnt/store/datasets/d1"
    assert container["command"][container["command"].index("--tokenizer") + 1] == "/mnt/store/tokenizers/t1"
    # Kubernetes mode trains the Llama-architecture production base by default.
    assert container["command"][container["command"].index("--base-model") + 1] == "HuggingFaceTB/SmolLM2-135M"
    assert container["resources"]["limits"] == {"memory": "128Gi", "nvidia.com/gpu": gpus}
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"} and len(pod["spec"]["tolerations"]) == 2
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RECSYS_ARTIFACTS_ROOT"] == "/mnt/store"
    assert {"name": "artifacts", "mountPath": "/mnt/store"} in container["volumeMounts"]
    assert "DAGSTER_PIPES_CONTEXT" in env and "DAGSTER_PIPES_MESSAGES" in env
    assert pod["spec"]["restartPolicy"] == "Never"


def test_store_paths_translate_between_the_orchestrator_and_a_pod(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    runner = kubernetes_runner(store, SETTINGS.model_copy(update={"artifacts_mount_path": "/mnt/store"}))
    model = store.base / "models" / "ft-1"
    assert runner.job_path(model) == "/mnt/store/models/ft-1"
    assert runner.local_path("/mnt/store/models/ft-1") == model
    assert runner.job_path("/elsewhere/base-model") == "/elsewhere/base-model"  # outside the store: as given
    same_mount = kubernetes_runner(store, SETTINGS)
    assert same_mount.job_path(model) == str(model) and same_mount.local_path(str(model)) == model


# ---------------------------------------------------------------- configuration


GPU_ENV = ("RECSYS_GPU_MODE", "RECSYS_GPU_STEPS", "RECSYS_GPU_IMAGE", "RECSYS_GPU_NAMESPACE", "RECSYS_ARTIFACTS_CLAIM")


@pytest.fixture
def gpu_env(monkeypatch):
    for variable in GPU_ENV:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_mode_and_pod_settings_come_from_the_environment(gpu_env, tmp_path):
    store = ArtifactStore(root=str(tmp_path))
    local = gpu_job_runner(store)
    assert local.mode == "local" and local.steps == {}  # local jobs read no steps file
    gpu_env.setenv("RECSYS_GPU_MODE", "kubernetes")
    assert set(gpu_job_runner(store).steps) == {"train", "build_engine", "generate"}  # deploy/gpu-steps.yaml
    steps_file = tmp_path / "gpu-steps.yaml"
    steps_file.write_text("defaults: {image: file-image:1, namespace: from-file}\nsteps:\n  generate: {memory: 32Gi}\n")
    gpu_env.setenv("RECSYS_GPU_STEPS", str(steps_file))
    gpu_env.setenv("RECSYS_GPU_IMAGE", "registry.example.com/recsys-gpu:2.0")
    runner = gpu_job_runner(store)
    pod = runner.pod_settings("gpu_jobs.generate")
    assert pod.image == "registry.example.com/recsys-gpu:2.0"  # the environment over the file
    assert pod.namespace == "from-file" and pod.memory == "32Gi"
    gpu_env.setenv("RECSYS_GPU_MODE", "slurm")
    with pytest.raises(ValueError, match="RECSYS_GPU_MODE"):
        gpu_job_runner(store)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("steps:\n  trian: {gpu_count: 1}\n", "steps.trian: unknown step"),
        ("steps:\n  train: {memroy: 64Gi}\n", "steps.train.memroy: unknown field"),
        ("defaults:\n  tolerations: [{key: nvidia.com/gpu, efect: NoSchedule}]\n", "defaults.tolerations.0.efect: unknown field"),
        ("steps:\n  generate: {gpu_count: 0}\n", "steps.generate.gpu_count: Input should be greater than or equal to 1"),
        ("steps: [train\n", "not valid YAML"),
    ],
)
def test_a_malformed_steps_file_says_where_and_what_to_fix(gpu_env, tmp_path, content, problem):
    steps_file = tmp_path / "gpu-steps.yaml"
    steps_file.write_text(content)
    gpu_env.setenv("RECSYS_GPU_MODE", "kubernetes")
    gpu_env.setenv("RECSYS_GPU_STEPS", str(steps_file))
    with pytest.raises(ValueError) as error:
        gpu_job_runner(ArtifactStore(root=str(tmp_path)))
    message = str(error.value)
    assert f"GPU steps file {steps_file} is malformed" in message and problem in message
    assert "point RECSYS_GPU_STEPS at another file" in message and "steps: train, build_engine, generate" in message


def test_a_missing_steps_file_says_what_to_do(gpu_env, tmp_path):
    gpu_env.setenv("RECSYS_GPU_MODE", "kubernetes")
    gpu_env.setenv("RECSYS_GPU_STEPS", str(tmp_path / "absent.yaml"))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'absent.yaml'} does not exist.*set RECSYS_GPU_STEPS"):
        gpu_job_runner(ArtifactStore(root=str(tmp_path)))

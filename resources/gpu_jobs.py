"""The GPU job runner: one way for every GPU step (training, engine build, generation) to run.

An asset calls ``gpu_jobs.run(context, module="gpu_jobs.train", args=[...])`` and gets the
dagster-pipes results back (logs, the reported materialization). Where the job runs is
configuration (``RECSYS_GPU_MODE``), never asset code:

- ``local`` (embedded default): ``python -m <module>`` as a subprocess of the step, on
  whatever device the machine has (CPU here).
- ``kubernetes`` (production): a pod through dagster-k8s' ``PipesK8sClient`` on an A800/H100
  node: the GPU image, ``nvidia.com/gpu`` limits, node selection and tolerations for the GPU
  pool, memory and a RAM-backed /dev/shm, and the artifact store's shared volume mounted at
  the same path the orchestrator uses, so paths in metadata mean the same on both sides.
  The pod settings come from deploy/gpu-steps.yaml (``RECSYS_GPU_STEPS``): defaults plus,
  per step (the job module's last name: ``gpu_jobs.train`` -> ``train``), its GPU count and
  resources.

Either way the job reads ``RECSYS_ARTIFACTS_ROOT`` for the store's root.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
import pydantic
import yaml
from dagster_k8s import PipesK8sClient
from pydantic_core import ErrorDetails

from resources import settings
from resources.artifacts import ArtifactStore

GPU_MODE_ENV = "RECSYS_GPU_MODE"
GPU_STEPS_ENV = "RECSYS_GPU_STEPS"
DEFAULT_GPU_STEPS = settings.PROJECT_DIR / "deploy" / "gpu-steps.yaml"
JOB_CONTAINER = "gpu-job"
SHM_VOLUME = "dshm"
ARTIFACTS_VOLUME = "artifacts"


class Toleration(dg.Config):
    model_config = pydantic.ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    key: str = "nvidia.com/gpu"
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""  # only with operator Equal
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] = "NoSchedule"


class KubernetesSettings(dg.Config):
    """Where and how GPU pods run in production: the ``defaults`` of deploy/gpu-steps.yaml."""

    model_config = pydantic.ConfigDict(extra="forbid")

    image: str = "recsys-platform-gpu:latest"  # built from deploy/gpu.Dockerfile
    # NVIDIA's images start through this script (it turns on CUDA forward compatibility on
    # older drivers). A pod's command replaces the image's entrypoint, so the job runs behind
    # it; empty for an image without one.
    entrypoint: list[str] = ["/opt/nvidia/nvidia_entrypoint.sh"]
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    namespace: str = "recsys"
    service_account: str = ""
    # Labels set by NVIDIA GPU feature discovery. The product list becomes a required node
    # affinity (a nodeSelector cannot say "A800 or H100").
    node_selector: dict[str, str] = {"nvidia.com/gpu.present": "true"}
    gpu_products: list[str] = [
        "NVIDIA-A800-SXM4-80GB",
        "NVIDIA-A800-80GB-PCIe",
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-H100-PCIe",
    ]
    # GPU nodes are tainted so that only GPU work lands there.
    # (Defaults given as dicts: Dagster's config schema takes plain values as defaults.)
    tolerations: list[Toleration] = pydantic.Field(
        default=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], validate_default=True
    )
    cpu: str = "8"
    memory: str = "64Gi"
    # PyTorch data loader workers and NCCL pass tensors through /dev/shm; the container
    # default of 64Mi breaks them.
    shm_size: str = "16Gi"
    artifacts_claim: str = "recsys-artifacts"  # ReadWriteMany claim that holds the artifact store
    artifacts_mount_path: str = ""  # default: the orchestrator's artifact store root
    load_incluster_config: bool | None = None  # None: in-cluster when running in a pod
    kubeconfig_file: str | None = None
    kube_context: str | None = None
    poll_interval_s: float = 10.0
    pod_wait_timeout_s: float = 48 * 3600.0


class StepSettings(dg.Config):
    """One GPU step's entry in deploy/gpu-steps.yaml: what it changes on top of the defaults
    (cpu, memory and shm_size are the KubernetesSettings fields of the same names)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    gpu_count: int | None = pydantic.Field(default=None, ge=1)
    """The pod's nvidia.com/gpu limit when the asset asks for no count; unset: 1."""
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = None


# The gpu_jobs modules that assets run, by step name.
GpuStep = Literal["train", "build_engine", "generate"]


class GpuStepsFile(pydantic.BaseModel):
    """The layout of deploy/gpu-steps.yaml."""

    model_config = pydantic.ConfigDict(extra="forbid")

    defaults: KubernetesSettings = pydantic.Field(default_factory=KubernetesSettings)
    steps: dict[GpuStep, StepSettings] = {}


def load_gpu_steps(path: Path) -> GpuStepsFile:
    """The pod settings in ``path``; a missing or malformed file raises, naming the file and the problem."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"GPU steps file {path} does not exist. Kubernetes mode needs the per-step GPU pod settings: "
            f"set {GPU_STEPS_ENV} to a copy of the repository's deploy/gpu-steps.yaml (deploy/Dockerfile puts it in the image)"
        ) from None
    except yaml.YAMLError as error:
        raise _malformed(path, [f"not valid YAML: {error}"]) from None
    try:
        return GpuStepsFile.model_validate(data)
    except pydantic.ValidationError as error:
        raise _malformed(path, [_problem(e) for e in error.errors()]) from None


def _malformed(path: Path, problems: list[str]) -> ValueError:
    listed = "".join(f"\n  {problem}" for problem in problems)
    return ValueError(
        f"GPU steps file {path} is malformed:{listed}\n"
        f"Fix it or point {GPU_STEPS_ENV} at another file. Top level: defaults, steps; steps: {', '.join(get_args(GpuStep))}; "
        f"a step's fields: {', '.join(StepSettings.model_fields)}; defaults: the fields of KubernetesSettings (resources/gpu_jobs.py)."
    )


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "[key]")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    if "[key]" in error["loc"]:  # the only keys with a type are the step names
        return f"{where}: unknown step"
    return f"{where}: {error['msg']}"


def step_name(module: str) -> str:
    """The steps-file entry of a job module: ``gpu_jobs.train`` -> ``train``."""
    return module.rpartition(".")[2]


def gpu_pod_spec(k8s: KubernetesSettings, gpu_count: int, artifacts_path: str) -> dict[str, Any]:
    """The pod spec of one GPU job (image, command and env are filled in by PipesK8sClient)."""
    container = {
        "name": JOB_CONTAINER,
        "imagePullPolicy": k8s.image_pull_policy,
        "resources": {
            "requests": {"cpu": k8s.cpu, "memory": k8s.memory},
            # Extended resources such as GPUs are set as limits; requests default to them.
            "limits": {"memory": k8s.memory, "nvidia.com/gpu": str(gpu_count)},
        },
        "volumeMounts": [
            {"name": ARTIFACTS_VOLUME, "mountPath": artifacts_path},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        ],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "nodeSelector": dict(k8s.node_selector),
        "tolerations": [_toleration(t) for t in k8s.tolerations],
        "volumes": [
            {"name": ARTIFACTS_VOLUME, "persistentVolumeClaim": {"claimName": k8s.artifacts_claim}},
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": k8s.shm_size}},
        ],
    }
    if k8s.gpu_products:
        match = {"key": "nvidia.com/gpu.product", "operator": "In", "values": list(k8s.gpu_products)}
        spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [match]}]}}
        }
    if k8s.service_account:
        spec["serviceAccountName"] = k8s.service_account
    return spec


def _toleration(toleration: Toleration) -> dict[str, str]:
    fields = {"key": toleration.key, "operator": toleration.operator, "value": toleration.value, "effect": toleration.effect}
    return {name: value for name, value in fields.items() if value}


def gpu_pod_meta(module: str) -> dict[str, Any]:
    return {"labels": {"app.kubernetes.io/part-of": "recsys-platform", "app.kubernetes.io/component": "gpu-job", "recsys/job": module}}


class GpuJobRunner(dg.ConfigurableResource):
    """Runs a gpu_jobs module through dagster-pipes: a local subprocess or a Kubernetes GPU pod."""

    mode: Literal["local", "kubernetes"] = "local"
    artifacts: ArtifactStore
    python: str = ""  # interpreter for local jobs; default: the orchestrator's own
    kubernetes: KubernetesSettings = pydantic.Field(default_factory=KubernetesSettings)
    steps: dict[str, StepSettings] = pydantic.Field(default_factory=dict)  # by step_name(module)

    @property
    def artifacts_path(self) -> str:
        """The artifact store root as the job sees it."""
        if self.mode == "kubernetes" and self.kubernetes.artifacts_mount_path:
            return self.kubernetes.artifacts_mount_path
        return str(self.artifacts.base)

    def job_path(self, path: Path | str) -> str:
        """A path in the orchestrator's artifact store as the job sees it (a pod may mount the
        store elsewhere); a path outside the store is passed as it is."""
        path = Path(path)
        if not path.is_relative_to(self.artifacts.base):
            return str(path)
        return str(Path(self.artifacts_path) / path.relative_to(self.artifacts.base))

    def local_path(self, job_path: Path | str) -> Path:
        """A path a job reported, as the orchestrator sees it (the inverse of ``job_path``)."""
        job_path = Path(job_path)
        if not job_path.is_relative_to(self.artifacts_path):
            return job_path
        return self.artifacts.base / job_path.relative_to(self.artifacts_path)

    def gpu_count_for(self, module: str, requested: int | None = None) -> int:
        """An explicit request wins over the step's gpu_count; with neither, one GPU."""
        if requested is not None:
            return requested
        return self._step(module).gpu_count or 1

    def pod_settings(self, module: str) -> KubernetesSettings:
        """The defaults with the module's step on top."""
        changes = self._step(module).model_dump(exclude_none=True, exclude={"gpu_count"})
        return self.kubernetes.model_copy(update=changes)

    def pod_spec(self, module: str, gpu_count: int | None = None) -> dict[str, Any]:
        """The pod spec of one job in kubernetes mode (PipesK8sClient fills in image, command and env)."""
        return gpu_pod_spec(self.pod_settings(module), self.gpu_count_for(module, gpu_count), self.artifacts_path)

    def _step(self, module: str) -> StepSettings:
        return self.steps.get(step_name(module), StepSettings())

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        args: Sequence[str] = (),
        extras: Mapping[str, Any] | None = None,
        gpu_count: int | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run ``python -m module *args``; the returned invocation holds what the job reported.

        ``gpu_count``: GPUs of the pod in kubernetes mode; None: the step's gpu_count (steps file).
        """
        env = {
            "RECSYS_ARTIFACTS_ROOT": self.artifacts_path,
            "PYTHONUNBUFFERED": "1",  # logs and pipes messages leave the job as they happen
        }
        if self.mode == "kubernetes":
            return self._run_pod(context, module, list(args), extras, gpu_count, env)
        requested = self.gpu_count_for(module, gpu_count)
        context.log.info(f"GPU job {module} as a local subprocess ({requested} GPU(s) requested, using this machine)")
        client = dg.PipesSubprocessClient(cwd=str(settings.PROJECT_DIR))
        command = [self.python or sys.executable, "-m", module, *args]
        return client.run(context=context, command=command, extras=extras, env=env)

    def _run_pod(
        self, context, module: str, args: list[str], extras, gpu_count: int | None, env: dict
    ) -> dg.PipesClientCompletedInvocation:
        k8s, gpus = self.pod_settings(module), self.gpu_count_for(module, gpu_count)
        # Hub downloads of base models are cached on the shared volume, once for all pods.
        env = {**env, "HF_HOME": f"{self.artifacts_path}/hf-cache"}
        context.log.info(f"GPU job {module} as a pod in {k8s.namespace}: {gpus} x GPU, image {k8s.image}")
        client = PipesK8sClient(
            load_incluster_config=k8s.load_incluster_config,
            kubeconfig_file=k8s.kubeconfig_file,
            kube_context=k8s.kube_context,
            poll_interval=k8s.poll_interval_s,
        )
        return client.run(
            context=context,
            extras=extras,
            image=k8s.image,
            command=[*k8s.entrypoint, "python3", "-m", module, *args],
            namespace=k8s.namespace,
            env=env,
            base_pod_meta=gpu_pod_meta(module),
            base_pod_spec=self.pod_spec(module, gpu_count),
            pod_wait_timeout=k8s.pod_wait_timeout_s,
        )


def gpu_job_runner(artifacts: ArtifactStore) -> GpuJobRunner:
    """The runner for this deployment, from the environment.

    RECSYS_GPU_MODE: local (default) | kubernetes. RECSYS_GPU_STEPS: the pod settings file,
    default deploy/gpu-steps.yaml in kubernetes mode (local jobs use none). RECSYS_GPU_IMAGE,
    RECSYS_GPU_NAMESPACE and RECSYS_ARTIFACTS_CLAIM override the file's image, namespace and
    the claim of the shared artifact volume.
    """
    mode = os.environ.get(GPU_MODE_ENV, "local")
    if mode not in ("local", "kubernetes"):
        raise ValueError(f"{GPU_MODE_ENV}={mode!r}: expected 'local' or 'kubernetes'")
    path = os.environ.get(GPU_STEPS_ENV) or (DEFAULT_GPU_STEPS if mode == "kubernetes" else None)
    gpu_steps = load_gpu_steps(Path(path)) if path else GpuStepsFile()
    kubernetes = gpu_steps.defaults.model_copy(update=_kubernetes_overrides())
    return GpuJobRunner(mode=mode, artifacts=artifacts, kubernetes=kubernetes, steps=gpu_steps.steps)


def _kubernetes_overrides() -> dict[str, str]:
    """Settings the deployment's environment gives (deploy/helm/values.yaml), over the file's defaults."""
    return {
        field: os.environ[variable]
        for field, variable in (
            ("image", "RECSYS_GPU_IMAGE"),
            ("namespace", "RECSYS_GPU_NAMESPACE"),
            ("artifacts_claim", "RECSYS_ARTIFACTS_CLAIM"),
        )
        if variable in os.environ
    }

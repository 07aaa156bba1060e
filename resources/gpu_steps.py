"""deploy/gpu-steps.yaml: the layout of the GPU pods' settings per step, and its loader.

``defaults`` are the fields of ``KubernetesSettings``; a step (the job module's last name:
``gpu_jobs.train`` -> ``train``) changes its GPU count and resources on top of them. An unknown
step or field is an error that names the file and the problem, so a typo stops the code
location from loading instead of silently falling back to a default.
"""

from pathlib import Path
from typing import Literal, get_args

import dagster as dg
import pydantic
import yaml
from pydantic_core import ErrorDetails


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


def step_name(module: str) -> str:
    """The steps-file entry of a job module: ``gpu_jobs.train`` -> ``train``."""
    return module.rpartition(".")[2]


def load_gpu_steps(path: Path) -> GpuStepsFile:
    """The pod settings in ``path``; a missing or malformed file raises, naming the file and the problem."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"GPU steps file {path} does not exist. Kubernetes mode needs the per-step GPU pod settings: "
            "set RECSYS_GPU_STEPS to a copy of the repository's deploy/gpu-steps.yaml (deploy/Dockerfile puts it in the image)"
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
        f"Fix it or point RECSYS_GPU_STEPS at another file. Top level: defaults, steps; steps: {', '.join(get_args(GpuStep))}; "
        f"a step's fields: {', '.join(StepSettings.model_fields)}; defaults: the fields of KubernetesSettings (resources/gpu_steps.py)."
    )


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "[key]")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    if "[key]" in error["loc"]:  # the only keys with a type are the step names
        return f"{where}: unknown step"
    return f"{where}: {error['msg']}"

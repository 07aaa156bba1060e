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

Either way the job reads ``RECSYS_ARTIFACTS_ROOT`` for the store's root.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dagster as dg
import pydantic
from dagster_k8s import PipesK8sClient

from resources import settings
from resources.artifacts import ArtifactStore

GPU_MODE_ENV = "RECSYS_GPU_MODE"
JOB_CONTAINER = "gpu-job"
SHM_VOLUME = "dshm"
ARTIFACTS_VOLUME = "artifacts"


class Toleration(dg.Config):
    key: str = "nvidia.com/gpu"
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""  # only with operator Equal
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] = "NoSchedule"


class KubernetesSettings(dg.Config):
    """Where and how GPU pods run in production."""

    image: str = "recsys-platform-gpu:latest"  # built from deploy/gpu.Dockerfile
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

    @property
    def artifacts_path(self) -> str:
        """The artifact store root as the job sees it."""
        if self.mode == "kubernetes" and self.kubernetes.artifacts_mount_path:
            return self.kubernetes.artifacts_mount_path
        return str(self.artifacts.base)

    def run(
        self,
        context: dg.AssetExecutionContext,
        module: str,
        args: Sequence[str] = (),
        extras: Mapping[str, Any] | None = None,
        gpu_count: int = 1,
    ) -> dg.PipesClientCompletedInvocation:
        """Run ``python -m module *args``; the returned invocation holds what the job reported."""
        env = {
            "RECSYS_ARTIFACTS_ROOT": self.artifacts_path,
            "PYTHONUNBUFFERED": "1",  # logs and pipes messages leave the job as they happen
        }
        if self.mode == "kubernetes":
            return self._run_pod(context, module, list(args), extras, gpu_count, env)
        context.log.info(f"GPU job {module} as a local subprocess ({gpu_count} GPU(s) requested, using this machine)")
        client = dg.PipesSubprocessClient(cwd=str(settings.PROJECT_DIR))
        command = [self.python or sys.executable, "-m", module, *args]
        return client.run(context=context, command=command, extras=extras, env=env)

    def _run_pod(self, context, module: str, args: list[str], extras, gpu_count: int, env: dict) -> dg.PipesClientCompletedInvocation:
        k8s = self.kubernetes
        # Hub downloads of base models are cached on the shared volume, once for all pods.
        env = {**env, "HF_HOME": f"{self.artifacts_path}/hf-cache"}
        context.log.info(f"GPU job {module} as a pod in {k8s.namespace}: {gpu_count} x GPU, image {k8s.image}")
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
            command=["python3", "-m", module, *args],
            namespace=k8s.namespace,
            env=env,
            base_pod_meta=gpu_pod_meta(module),
            base_pod_spec=gpu_pod_spec(k8s, gpu_count, self.artifacts_path),
            pod_wait_timeout=k8s.pod_wait_timeout_s,
        )


def gpu_job_runner(artifacts: ArtifactStore) -> GpuJobRunner:
    """The runner for this deployment, from the environment.

    RECSYS_GPU_MODE: local (default) | kubernetes. In kubernetes mode RECSYS_GPU_IMAGE,
    RECSYS_GPU_NAMESPACE and RECSYS_ARTIFACTS_CLAIM override the image, namespace and the
    claim of the shared artifact volume.
    """
    mode = os.environ.get(GPU_MODE_ENV, "local")
    if mode not in ("local", "kubernetes"):
        raise ValueError(f"{GPU_MODE_ENV}={mode!r}: expected 'local' or 'kubernetes'")
    overrides = {
        field: os.environ[variable]
        for field, variable in (
            ("image", "RECSYS_GPU_IMAGE"),
            ("namespace", "RECSYS_GPU_NAMESPACE"),
            ("artifacts_claim", "RECSYS_ARTIFACTS_CLAIM"),
        )
        if variable in os.environ
    }
    return GpuJobRunner(mode=mode, artifacts=artifacts, kubernetes=KubernetesSettings(**overrides))

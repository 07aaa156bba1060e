"""The GPU job runner: one way for every GPU step (training, engine build, generation) to run.

An asset calls ``gpu_jobs.run(context, module="gpu_jobs.train", args=[...])`` and gets the
dagster-pipes results back (logs, the reported materialization). Where the job runs is
configuration (``RECSYS_GPU_MODE``), never asset code:

- ``local`` (embedded default): ``python -m <module>`` as a subprocess of the step, on
  whatever device the machine has (CPU here).
- ``kubernetes`` (production): a pod through dagster-k8s' ``PipesK8sClient`` on an A800/H100
  node (resources/pod_spec.py): the GPU image, ``nvidia.com/gpu`` limits, node selection and
  tolerations for the GPU pool, memory and a RAM-backed /dev/shm, and the artifact store's
  shared volume mounted at the same path the orchestrator uses, so paths in metadata mean the
  same on both sides. The pod settings come from deploy/gpu-steps.yaml (``RECSYS_GPU_STEPS``,
  resources/gpu_steps.py): defaults plus, per step, its GPU count and resources.

Either way the job reads ``RECSYS_ARTIFACTS_ROOT`` for the store's root.
"""

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pydantic
from dagster_k8s import PipesK8sClient

from resources import settings
from resources.artifacts import ArtifactStore
from resources.gpu_steps import GpuStepsFile, KubernetesSettings, StepSettings, load_gpu_steps, step_name
from resources.pod_spec import gpu_pod_meta, gpu_pod_spec


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
    """The runner for this deployment, from the environment (resources/settings.py).

    RECSYS_GPU_MODE: local (default) | kubernetes. RECSYS_GPU_STEPS: the pod settings file,
    default deploy/gpu-steps.yaml in kubernetes mode (local jobs use none). RECSYS_GPU_IMAGE,
    RECSYS_GPU_NAMESPACE and RECSYS_ARTIFACTS_CLAIM override the file's image, namespace and
    the claim of the shared artifact volume.
    """
    path = settings.gpu_steps_file()
    gpu_steps = load_gpu_steps(path) if path else GpuStepsFile()
    kubernetes = gpu_steps.defaults.model_copy(update=settings.gpu_pod_overrides())
    return GpuJobRunner(mode=settings.gpu_mode(), artifacts=artifacts, kubernetes=kubernetes, steps=gpu_steps.steps)

"""The Kubernetes pod of one GPU job: GPU limits, the GPU pool's nodes, the shared artifact volume, /dev/shm.

PipesK8sClient fills in the image, command and environment; what is here is everything a GPU
pod needs beyond them.
"""

from __future__ import annotations

from typing import Any

from resources.gpu_steps import KubernetesSettings, Toleration

JOB_CONTAINER = "gpu-job"
SHM_VOLUME = "dshm"
ARTIFACTS_VOLUME = "artifacts"


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

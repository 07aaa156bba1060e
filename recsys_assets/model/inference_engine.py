"""The inference engine: the fine-tuned model prepared for fast generation.

The asset decides *what* to build (which model, which backend); gpu_jobs/build_engine.py
builds it, and the ``gpu_jobs`` resource decides *where* (a local subprocess on the CPU, or a
Kubernetes GPU pod). Serving and the evaluation generate with the engine it records.
"""

from pathlib import Path

import dagster as dg

from recsys_assets.keys import FINE_TUNED_MODEL, INFERENCE_ENGINE
from recsys_assets.metadata import rounded
from resources.artifacts import ArtifactStore, latest_metadata
from resources.gpu_jobs import GpuJobRunner

# The backend each GPU mode serves with when the config names none:
# TensorRT-LLM where GPUs are, CTranslate2 int8 on a CPU.
DEFAULT_BACKEND = {"local": "ctranslate2", "kubernetes": "tensorrt-llm"}


class EngineConfig(dg.Config):
    backend: str = ""
    """ctranslate2 (CPU, int8), tensorrt-llm (GPU, fp16) or transformers (reference). Empty: by GPU mode."""
    precision: str = ""
    """Empty: the backend's default (int8 for ctranslate2, float16 for tensorrt-llm)."""


@dg.asset(
    key=INFERENCE_ENGINE,
    deps=[FINE_TUNED_MODEL],
    group_name="model",
    owners=["team:ml"],
    kinds={"pytorch", "tensorrt"},
    description=(
        "The fine-tuned model prepared for fast generation: CTranslate2 int8 on CPU (embedded default), "
        "TensorRT-LLM in GPU production, or the transformers reference. Records backend, precision, build time "
        "and size; built by gpu_jobs/build_engine.py as a GPU job."
    ),
)
def inference_engine(
    context: dg.AssetExecutionContext, config: EngineConfig, gpu_jobs: GpuJobRunner, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    model = latest_metadata(context.instance, FINE_TUNED_MODEL)
    backend = config.backend or DEFAULT_BACKEND[gpu_jobs.mode]
    out_dir = artifacts.folder("engines", f"{model['model_version']}-{backend}-{config.precision or 'default'}")
    args = ["--model-dir", gpu_jobs.job_path(Path(model["path"]) / "merged"), "--backend", backend, "--out-dir", gpu_jobs.job_path(out_dir)]
    if config.precision:
        args += ["--precision", config.precision]
    reported = gpu_jobs.run(context, module="gpu_jobs.build_engine", args=args).get_materialize_result()
    return dg.MaterializeResult(metadata={**rounded(reported.metadata), "path": str(out_dir), "model_version": model["model_version"]})

"""The generation GPU job, gpu_jobs/generate.py, as the product's shards and the evaluation call it.

The job reads and writes parquet files in its folder of the artifact store; the ``gpu_jobs``
resource runs it as a local subprocess or a Kubernetes GPU pod, and the job reports its counts
(users, valid ids, throughput) back through pipes.
"""

import dagster as dg
import pandas as pd

from recsys_assets.metadata import duration, frame_table
from recsys_assets.serving.generation_inputs import dataset_manifest
from resources.artifacts import ArtifactStore
from resources.generation import GenerationSettings
from resources.gpu_jobs import GpuJobRunner

# What a generation job reads and writes, in its folder of the artifact store.
GENERATION_FILES = {
    "--prompts": "prompts.parquet",
    "--catalog": "catalog.parquet",
    "--bought": "bought.parquet",
    "--candidates": "candidates.parquet",
    "--output": "recommendations.parquet",
}


def generate_for(
    context: dg.AssetExecutionContext,
    engine: dict,
    prompts: pd.DataFrame,
    bought: pd.DataFrame,
    catalog: pd.DataFrame,
    pool: pd.DataFrame,
    run_name: str,
    generation: GenerationSettings,
    keep_bought: bool,
    gpu_jobs: GpuJobRunner,
    artifacts: ArtifactStore,
) -> tuple[pd.DataFrame, dict]:
    """Run gpu_jobs.generate with ``engine`` (an engine's metadata: path, model_version) on ``prompts``
    (user_id, prompt), ranking ``pool`` (user_id, item_id, source) beside the generated items; returns
    recommendations and the job's metadata."""
    dataset = dataset_manifest(context)
    folder = artifacts.folder("generation", run_name)
    inputs = {
        "prompts": prompts[["user_id", "prompt"]],
        "bought": bought[["user_id", "item_id"]],
        "catalog": catalog[["item_id"]],
        "candidates": pool[["user_id", "item_id", "source"]],
    }
    for name, frame in inputs.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    files = {flag: gpu_jobs.job_path(folder / name) for flag, name in GENERATION_FILES.items()}
    args = ["--engine-dir", gpu_jobs.job_path(engine["path"]), *(a for pair in files.items() for a in pair)]
    args += generation.job_args(dataset["serve_target_tokens"], keep_bought)
    reported = gpu_jobs.run(context, module="gpu_jobs.generate", args=args).get_materialize_result()
    job_metadata = {name: value.value for name, value in reported.metadata.items()}
    return pd.read_parquet(folder / GENERATION_FILES["--output"]), {**job_metadata, "model_version": engine["model_version"]}


def generation_metadata(job: dict, recommendations: pd.DataFrame, seconds: float) -> dict:
    keep = ("backend", "users", "users_per_second", "valid_id_rate", "mean_items_per_user", "generated_tokens_per_second",
            "users_without_recommendations", "invalid_ids_dropped", "bought_items_excluded", "model_version")  # fmt: skip
    preview = recommendations[recommendations["rank"] <= 5].head(15)
    shown = [column for column in ("user_id", "rank", "item_id", "score", "source") if column in preview.columns]
    return {
        **{name: job[name] for name in keep if name in job},
        "dagster/row_count": len(recommendations),
        "seconds": round(seconds, 2),
        "duration": duration(seconds),
        "preview": frame_table(preview[shown]),
    }

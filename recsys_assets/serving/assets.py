"""Serving layer: the inference engine, and recommendations generated per user-range shard.

The assets decide *what* to generate; gpu_jobs/build_engine.py and gpu_jobs/generate.py do
the work, and the ``gpu_jobs`` resource decides *where* (a local subprocess on the CPU, or a
Kubernetes GPU pod per shard). The LLM's test-period recommendations for the evaluation layer
come from the same generation path as the product's.
"""

import dataclasses
import json
import time
from functools import partial
from pathlib import Path

import dagster as dg
import pandas as pd

from partitions import user_shards
from partitions.user_shards import shard_range
from recsys_assets.evaluation.assets import load_baseline_inputs
from recsys_assets.evaluation.promotion import FALLBACK_VERSION, MODEL_PROMOTION, SERVING, promoted_engine_or_none
from recsys_assets.serving.candidate_pool import candidate_pool, serving_inputs
from recsys_assets.evaluation.tables import LLM_CHAINS, delete_recommendations, write_recommendations
from recsys_assets.metadata import duration, frame_table, rounded
from recsys_assets.serving.checks import recommendation_check_specs, recommendation_checks
from resources.artifacts import ArtifactStore, latest_artifact, latest_metadata
from resources.generation import GenerationSettings, repeat_share_sql
from resources.gpu_jobs import GpuJobRunner
from resources.splits import EvaluationSplit
from resources.warehouse import Warehouse, transaction

FINE_TUNED_MODEL = dg.AssetKey(["model", "fine_tuned_model"])
USER_RECOMMENDATIONS_KEY = dg.AssetKey(["serving", "user_recommendations"])
LLM_TEST_RECOMMENDATIONS_KEY = dg.AssetKey(["evaluation", "llm_test_recommendations"])
INFERENCE_ENGINE = dg.AssetKey(["model", "inference_engine"])
PROMPT_DATASET = dg.AssetKey(["llm_data", "prompt_dataset"])
USER_RECOMMENDATIONS = "marts.user_recommendations"
# What a generation job reads and writes, in its folder of the artifact store.
GENERATION_FILES = {
    "--prompts": "prompts.parquet",
    "--catalog": "catalog.parquet",
    "--bought": "bought.parquet",
    "--candidates": "candidates.parquet",
    "--output": "recommendations.parquet",
}
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
    dataset = _dataset_manifest(context)
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


def _dataset_manifest(context: dg.AssetExecutionContext) -> dict:
    return json.loads((latest_artifact(context.instance, PROMPT_DATASET) / "dataset.json").read_text())


def repeat_policy(context: dg.AssetExecutionContext, warehouse: Warehouse, generation: GenerationSettings) -> tuple[bool, str]:
    """Keep or drop already-bought items, from the configuration or from the training period's
    repeat share (the same data for the product and the evaluation, so the same answer)."""
    train_cutoff = _dataset_manifest(context)["split_dates"]["val_start"]
    with warehouse.get_connection() as conn:
        share = float(conn.execute(repeat_share_sql(), [train_cutoff]).fetchall()[0][0])
    keep, reason = generation.keep_bought(share)
    context.log.info(f"Repeat policy: {reason}")
    return keep, reason


def _prompts(context: dg.AssetExecutionContext, split: str) -> pd.DataFrame:
    return pd.read_parquet(latest_artifact(context.instance, PROMPT_DATASET) / f"{split}.parquet")


def _replace_shard_rows(conn, recommendations: pd.DataFrame, shard_filter: str, model_version: str) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {USER_RECOMMENDATIONS} (user_id BIGINT, rank INTEGER, item_id BIGINT, "
        "score DOUBLE, model_version VARCHAR, generated_at TIMESTAMP)"
    )
    conn.register("incoming", recommendations)
    try:
        with transaction(conn):
            conn.execute(f"DELETE FROM {USER_RECOMMENDATIONS} WHERE {shard_filter}")
            conn.execute(
                f"INSERT INTO {USER_RECOMMENDATIONS} SELECT user_id, rank, item_id, score, ?, now() FROM incoming ORDER BY user_id, rank",
                [model_version],
            )
    finally:
        conn.unregister("incoming")


def _generation_metadata(job: dict, recommendations: pd.DataFrame, seconds: float) -> dict:
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


def popularity_fallback(conn, user_ids: pd.Series, bought: pd.DataFrame, max_items: int, keep_bought: bool) -> pd.DataFrame:
    """The most-bought catalog items for each user (bought ones left out unless configured): what a
    shard serves before any model has passed the promotion gate, so a feed is never empty."""
    conn.register("fallback_users", pd.DataFrame({"user_id": user_ids.astype("int64")}))
    conn.register("fallback_bought", bought[["user_id", "item_id"]])
    try:
        return conn.execute(
            f"""
            WITH popular AS (
                SELECT i.item_id, count(DISTINCT p.user_id) AS buyers
                FROM staging.stg_items i LEFT JOIN staging.fct_purchases p USING (item_id) GROUP BY 1
                ORDER BY buyers DESC, item_id LIMIT ?
            ), candidates AS (
                SELECT u.user_id, p.item_id, p.buyers FROM fallback_users u CROSS JOIN popular p
                {"" if keep_bought else "ANTI JOIN fallback_bought b ON b.user_id = u.user_id AND b.item_id = p.item_id"}
            ), ranked AS (
                SELECT user_id, item_id, buyers::DOUBLE AS score,
                       row_number() OVER (PARTITION BY user_id ORDER BY buyers DESC, item_id) AS rank
                FROM candidates
            )
            SELECT user_id, rank::INTEGER AS rank, item_id, score FROM ranked WHERE rank <= ? ORDER BY user_id, rank
            """,
            [max_items + int(bought.groupby("user_id").size().max() if len(bought) else 0), max_items],
        ).df()
    finally:
        conn.unregister("fallback_users")
        conn.unregister("fallback_bought")


def _catalog_and_bought(warehouse: Warehouse, users_filter: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with warehouse.get_connection() as conn:
        catalog = conn.execute("SELECT item_id FROM staging.stg_items").df()
        bought = conn.execute(f"SELECT DISTINCT user_id, item_id FROM staging.fct_purchases WHERE {users_filter}").df()
    return catalog, bought


def _pool(context: dg.AssetExecutionContext, generation: GenerationSettings, load_inputs, excluded: pd.DataFrame | None) -> pd.DataFrame:
    """The candidate pool from ``load_inputs()`` (read only when the likelihood ranking needs it), topped up
    with popular items to max_items servable ones (``excluded``: what the repeat policy never serves)."""
    if generation.ranking != "likelihood":
        return pd.DataFrame(columns=["user_id", "item_id", "source"])
    inputs = load_inputs()
    started = time.perf_counter()
    pool = candidate_pool(inputs, generation.pool_sources, generation.pool_items_per_source, generation.max_items, excluded)
    users = max(len(inputs.users), 1)
    context.log.info(f"Candidate pool: {len(pool) / users:.0f} items per user from {', '.join(generation.pool_sources)} "
                     f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return pool


def chain_order(recommendations: pd.DataFrame) -> pd.DataFrame:
    """The generated items alone, ranked by the chains' agreement (what the list was before the likelihood ranking)."""
    generated = recommendations.dropna(subset=["chain_rank"]).sort_values(["user_id", "chain_rank"])
    return generated.assign(rank=generated.groupby("user_id").cumcount() + 1, score=generated["chains_with_item"].astype(float))


@dg.asset(
    key=USER_RECOMMENDATIONS_KEY,
    check_specs=recommendation_check_specs(USER_RECOMMENDATIONS_KEY),
    # Every shard reads all days of purchases (to leave out what its users already bought).
    # The promoted engine, never an unchecked one (recsys_assets/evaluation/promotion.py).
    deps=[MODEL_PROMOTION, PROMPT_DATASET, dg.AssetDep(["staging", "fct_purchases"], partition_mapping=dg.AllPartitionMapping())],
    partitions_def=user_shards,
    # One run per shard: a backfill of N shards is N GPU jobs (N pods, N GPUs in production).
    # No warehouse pool: it would serialize hours of generation; the short final write waits
    # for DuckDB's lock through the resource's retries instead.
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    group_name="serving",
    owners=["team:ml"],
    kinds={"pytorch", "duckdb"},
    description=(
        "Per-user recommendations for one user-range shard, from the engine the promotion gate "
        "(evaluation/model_promotion) let through: 4 sampled chains per user from the newest-history prompt, merged into "
        "unique catalog items; the model then ranks those and the user's candidate pool (own purchases, co-purchased and "
        "popular items) by its likelihood after the prompt, into lists of max_items. Written to "
        "marts.user_recommendations (user_id, rank, item_id, score, model_version, generated_at); a shard "
        "replaces its id range atomically."
    ),
)
def user_recommendations(
    context: dg.AssetExecutionContext, generation: GenerationSettings, gpu_jobs: GpuJobRunner, artifacts: ArtifactStore, warehouse: Warehouse
) -> dg.MaterializeResult:
    started = time.perf_counter()
    shard = shard_range(context.partition_key)
    serve = _prompts(context, "serve")
    prompts = serve[serve["user_id"].between(shard.lo, shard.hi)]
    catalog, bought = _catalog_and_bought(warehouse, shard.sql_filter())
    context.log.info(f"Shard {context.partition_key}: {len(prompts)} users")
    keep_bought, policy = repeat_policy(context, warehouse, generation)
    engine = promoted_engine_or_none(context.instance)
    if engine is None:
        context.log.warning(
            "No model has passed the promotion gate yet (see evaluation/model_promotion): this shard serves "
            f"{FALLBACK_VERSION} until one does."
        )
        with warehouse.get_connection() as conn:
            recommendations = popularity_fallback(conn, prompts["user_id"], bought, generation.max_items, keep_bought)
        job = {"model_version": FALLBACK_VERSION, "backend": "none", "users": len(prompts)}
    else:
        def every_purchase():
            with warehouse.get_connection() as conn:
                purchases = conn.execute("SELECT user_id, item_id, ts FROM staging.fct_purchases ORDER BY user_id, ts, item_id").df()
            return serving_inputs(purchases, prompts["user_id"])

        pool = _pool(context, generation, every_purchase, None if keep_bought else bought)
        run_name = f"shard-{context.partition_key}"
        recommendations, job = generate_for(
            context, engine, prompts, bought, catalog, pool, run_name, generation, keep_bought, gpu_jobs, artifacts
        )
    with warehouse.get_connection() as conn:
        _replace_shard_rows(conn, recommendations, shard.sql_filter(), job["model_version"])
        table_rows = conn.execute(f"SELECT count(*) FROM {USER_RECOMMENDATIONS}").fetchone()[0]
    metadata = _generation_metadata(job, recommendations, time.perf_counter() - started)
    checks = recommendation_checks(
        recommendations, prompts["user_id"], catalog["item_id"], job, generation.max_items, None if keep_bought else bought
    )
    return dg.MaterializeResult(
        # The row count is the table's (every shard); the shard's own rows beside it.
        metadata={**metadata, "dagster/row_count": table_rows, "shard_rows": len(recommendations), "shard_users": len(prompts),
                  "repeat_policy": policy},  # fmt: skip
        check_results=checks,
    )


@dg.asset(
    key=LLM_TEST_RECOMMENDATIONS_KEY,
    check_specs=recommendation_check_specs(LLM_TEST_RECOMMENDATIONS_KEY),
    deps=[INFERENCE_ENGINE, PROMPT_DATASET],
    group_name="evaluation",
    owners=["team:ml"],
    kinds={"pytorch", "duckdb"},
    description=(
        "The fine-tuned LLM's recommendations for the test period: generated like the product's, from each "
        "test user's prompt as of the test cut-off, into evaluation.recommendations (recommender 'llm'), with the "
        "product's generation settings, candidate pool and repeat policy (the generation resource): the evaluation scores "
        "what is served. The generated items alone in the chains' order are scored too, as 'llm_chains'."
    ),
)
def llm_test_recommendations(
    context: dg.AssetExecutionContext,
    generation: GenerationSettings,
    gpu_jobs: GpuJobRunner,
    artifacts: ArtifactStore,
    warehouse: Warehouse,
    splits: EvaluationSplit,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    test = _prompts(context, "test")
    keep_bought, policy = repeat_policy(context, warehouse, generation)
    cutoff = pd.Timestamp(_dataset_manifest(context)["split_dates"]["test_start"])
    catalog, bought = _catalog_and_bought(warehouse, f"ts < TIMESTAMP '{cutoff}'")
    # The pool sees what the baselines see: fitted before the training cut-off, histories before the test period.
    def what_baselines_see():
        with warehouse.get_connection() as conn:
            inputs = load_baseline_inputs(conn, splits.dates(conn))
        return dataclasses.replace(inputs, users=test["user_id"].sort_values().to_numpy())

    pool = _pool(context, generation, what_baselines_see, None if keep_bought else bought)
    challenger = latest_metadata(context.instance, INFERENCE_ENGINE)
    generate = partial(generate_for, context, prompts=test, bought=bought, catalog=catalog, pool=pool, generation=generation,
                       keep_bought=keep_bought, gpu_jobs=gpu_jobs, artifacts=artifacts)  # fmt: skip
    recommendations, job = generate(challenger, run_name="evaluation-test")
    # The model serving now, re-scored on the same period, is what the promotion gate compares with.
    serving = promoted_engine_or_none(context.instance)
    rescore = serving is not None and serving["model_version"] != challenger["model_version"]
    if rescore:
        context.log.info(f"Re-scoring the serving model {serving['model_version']} on the test period")
        serving_recommendations, _ = generate(serving, run_name="evaluation-serving")
    with warehouse.get_connection() as conn:
        write_recommendations(conn, "llm", recommendations)
        if generation.ranking == "likelihood":
            write_recommendations(conn, LLM_CHAINS, chain_order(recommendations))
        else:
            delete_recommendations(conn, LLM_CHAINS)
        if rescore:
            write_recommendations(conn, SERVING, serving_recommendations)
        else:
            delete_recommendations(conn, SERVING)
    metadata = _generation_metadata(job, recommendations, time.perf_counter() - started)
    serving_version = serving["model_version"] if rescore else ""
    checks = recommendation_checks(
        recommendations, test["user_id"], catalog["item_id"], job, generation.max_items, None if keep_bought else bought
    )
    return dg.MaterializeResult(
        metadata={**metadata, "serving_model_version": serving_version, "repeat_policy": policy}, check_results=checks
    )


serving_assets = [inference_engine, user_recommendations, llm_test_recommendations]

"""evaluation/llm_test_recommendations: the LLM's top lists for the test period, beside the baselines'.

They come from the product's generation path (recsys_assets/serving/generation_job.py, which
runs gpu_jobs/generate.py) with the product's generation settings, candidate pool and repeat
policy, so the evaluation scores what would be served.
"""

import dataclasses
import time
from functools import partial

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import GROUP, OWNERS
from recsys_assets.evaluation.inputs import load_baseline_inputs
from recsys_assets.evaluation.promotion import SERVING, promoted_engine_or_none
from recsys_assets.evaluation.tables import LLM, LLM_CHAINS, RECOMMENDATIONS, delete_recommendations, write_recommendations
from recsys_assets.keys import INFERENCE_ENGINE, LLM_TEST_RECOMMENDATIONS, PROMPT_DATASET
from recsys_assets.serving.checks import recommendation_check_specs, recommendation_checks
from recsys_assets.serving.candidate_pool import fit_pool_item_models
from recsys_assets.serving.generation_inputs import catalog_and_bought, dataset_manifest, generation_pool, load_prompts, repeat_policy
from recsys_assets.serving.generation_job import generate_for, generation_metadata
from resources.artifacts import ArtifactStore, latest_metadata
from resources.generation import GenerationSettings
from resources.gpu_jobs import GpuJobRunner
from resources.splits import EvaluationSplit
from resources.warehouse import Warehouse


def chain_order(recommendations: pd.DataFrame) -> pd.DataFrame:
    """The generated items alone, ranked by the chains' agreement (what the list was before the likelihood ranking)."""
    generated = recommendations.dropna(subset=["chain_rank"]).sort_values(["user_id", "chain_rank"])
    return generated.assign(rank=generated.groupby("user_id").cumcount() + 1, score=generated["chains_with_item"].astype(float))


@dg.asset(
    key=LLM_TEST_RECOMMENDATIONS,
    check_specs=recommendation_check_specs(LLM_TEST_RECOMMENDATIONS),
    deps=[INFERENCE_ENGINE, PROMPT_DATASET],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pytorch", "duckdb"},
    description=(
        "The fine-tuned LLM's recommendations for the test period: generated like the product's, by gpu_jobs/generate.py "
        f"as a GPU job, from each test user's prompt as of the test cut-off, into {RECOMMENDATIONS} (recommender "
        f"'{LLM}'), with the product's generation settings, candidate pool and repeat policy (the generation resource): "
        f"the evaluation scores what is served. The generated items alone in the chains' order are scored too, as '{LLM_CHAINS}'."
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
    test = load_prompts(context, "test")
    keep_bought, policy = repeat_policy(context, warehouse, generation)
    cutoff = pd.Timestamp(dataset_manifest(context)["split_dates"]["test_start"])
    catalog, bought = catalog_and_bought(warehouse, f"ts < TIMESTAMP '{cutoff}'")
    # The pool sees what the baselines see: fitted before the training cut-off, histories before the test period.
    def what_baselines_see():
        with warehouse.get_connection() as conn:
            inputs = load_baseline_inputs(conn, splits.dates(conn))
        return fit_pool_item_models(inputs.training), dataclasses.replace(inputs, users=test["user_id"].sort_values().to_numpy())

    pool = generation_pool(context, generation, what_baselines_see, None if keep_bought else bought)
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
        write_recommendations(conn, LLM, recommendations)
        if generation.ranking == "likelihood":
            write_recommendations(conn, LLM_CHAINS, chain_order(recommendations))
        else:
            delete_recommendations(conn, LLM_CHAINS)
        if rescore:
            write_recommendations(conn, SERVING, serving_recommendations)
        else:
            delete_recommendations(conn, SERVING)
    metadata = generation_metadata(job, recommendations, time.perf_counter() - started)
    serving_version = serving["model_version"] if rescore else ""
    checks = recommendation_checks(
        recommendations, test["user_id"], catalog["item_id"], job, generation.max_items, None if keep_bought else bought
    )
    return dg.MaterializeResult(
        metadata={**metadata, "serving_model_version": serving_version, "repeat_policy": policy}, check_results=checks
    )

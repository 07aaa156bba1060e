"""The metrics asset: every recommender's offline scores on the test period.

Every recommender (the baselines of baseline_assets.py, the LLM of llm_test_recommendations.py)
writes its top lists for the test period into ``evaluation.recommendations``;
``evaluation/recommendation_metrics`` scores all of them against the held-out purchases
(evaluation/inputs.py) and writes ``marts.recommendation_metrics``.
"""

import base64
import time
from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import GROUP, OWNERS
from recsys_assets.evaluation.baseline_assets import BASELINES
from recsys_assets.evaluation.checks import BEATS_POPULARITY, beats_popularity
from recsys_assets.evaluation.inputs import SOURCE_DEPS, load_ground_truth
from recsys_assets.evaluation.metrics import evaluate
from recsys_assets.evaluation.report import comparison_plot, deltas_frame, llm_standings, metrics_frame
from recsys_assets.evaluation.tables import LLM, LLM_CHAINS, RECOMMENDATIONS, append_results, read_recommendations
from recsys_assets.evaluation.tables import METRICS as METRICS_TABLE
from recsys_assets.keys import LLM_TEST_RECOMMENDATIONS, RECOMMENDATION_METRICS
from recsys_assets.metadata import duration, frame_table
from resources.artifacts import ArtifactStore, latest_materialization
from resources.splits import EvaluationSplit
from resources.warehouse import WAREHOUSE_POOL, Warehouse


class MetricsConfig(dg.Config):
    ks: list[int] = [10, 50, 200]
    """Cut-offs K."""
    top_popular: int = 100
    """N of "the N most popular training items" in top_bias and serendipity."""
    focus_model: str = LLM
    """The model compared with every other one; until it has recommendations, the best by NDCG at the smallest K."""


def score_all(recommendations: pd.DataFrame, held_out: pd.DataFrame, stats, ks: list[int]) -> pd.DataFrame:
    frames = [evaluate(recs, held_out, stats, ks).assign(model=model) for model, recs in recommendations.groupby("recommender")]
    if not frames:
        raise ValueError(f"{RECOMMENDATIONS} is empty: materialize the baselines (and the LLM's test recommendations) first.")
    return pd.concat(frames, ignore_index=True)[["model", "metric", "k", "value"]]


def focus_model(metrics: pd.DataFrame, preferred: str) -> str:
    if preferred in set(metrics["model"]):
        return preferred
    first_k = metrics[(metrics["metric"] == "ndcg") & (metrics["k"] == metrics["k"].min())]
    return str(first_k.sort_values("value", ascending=False)["model"].iloc[0])


def _llm_raw_valid_id_rate(instance: dg.DagsterInstance) -> float | None:
    """The LLM's valid-id rate before invalid ids were dropped, as its asset reported it."""
    latest = latest_materialization(instance, LLM_TEST_RECOMMENDATIONS)
    return latest.metadata.get("valid_id_rate") if latest else None


def with_generated_valid_id_rate(metrics: pd.DataFrame, rate: float | None, models: tuple[str, ...]) -> pd.DataFrame:
    """The LLM's ``valid_id_rate`` is the share of the ids it *generated* that are catalog ids: its lists
    are filtered to the catalog before they are written, so their slots are always valid."""
    if rate is None:
        return metrics
    generated = metrics["model"].isin(models) & (metrics["metric"] == "valid_id_rate")
    return metrics.assign(value=metrics["value"].mask(generated, rate))


@dg.asset(
    key=RECOMMENDATION_METRICS,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "python"},
    deps=[*(b.key for b in BASELINES), LLM_TEST_RECOMMENDATIONS, *SOURCE_DEPS],
    pool=WAREHOUSE_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            BEATS_POPULARITY, asset=RECOMMENDATION_METRICS, description="The LLM beats global popularity on HitRate and NDCG at the smallest K."
        )
    ],
    description=(
        f"Scores every recommender in {RECOMMENDATIONS} against the test period's purchases at each K: HitRate, "
        "Precision, Recall, MAP, NDCG, Revenue, Top bias, Recall by category, Novelty, Serendipity, coverage, valid-id "
        f"rate (definitions: recsys_assets/evaluation/metrics.py). Appends to {METRICS_TABLE}; the metadata compares "
        "the LLM with each baseline."
    ),
)
def recommendation_metrics(
    context: dg.AssetExecutionContext, config: MetricsConfig, warehouse: Warehouse, splits: EvaluationSplit, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    started = time.perf_counter()
    evaluated_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with warehouse.get_connection() as conn:
        dates = splits.dates(conn)
        held_out, stats = load_ground_truth(conn, dates, config.top_popular)
        recommendations = read_recommendations(conn)
        raw_valid = _llm_raw_valid_id_rate(context.instance)
        metrics = with_generated_valid_id_rate(score_all(recommendations, held_out, stats, config.ks), raw_valid, (LLM, LLM_CHAINS))
        append_results(conn, METRICS_TABLE, metrics, evaluated_at)

    focus = focus_model(metrics, config.focus_model)
    png = comparison_plot(metrics, config.ks, focus)
    artifacts.path("evaluation", evaluated_at.strftime("%Y%m%dT%H%M%S"), "comparison.png").write_bytes(png)
    headline = metrics[metrics["metric"].isin(["hit_rate", "ndcg"]) & (metrics["k"] == min(config.ks))]
    context.log.info(f"Scored {metrics['model'].nunique()} recommenders on {held_out['user_id'].nunique()} test users")
    standings = llm_standings(metrics, config.ks)
    for line in standings:
        (context.log.warning if " behind " in line else context.log.info)(line)
    return dg.MaterializeResult(
        metadata={
            "evaluated_at": str(evaluated_at),
            "models": dg.MetadataValue.json(sorted(metrics["model"].unique())),
            "test_period": f"{dates.test_start} .. {dates.end}",
            "test_users": int(held_out["user_id"].nunique()),
            "held_out_items_per_user": round(len(held_out) / max(held_out["user_id"].nunique(), 1), 2),
            "dagster/row_count": len(metrics),
            "compared_model": focus,
            # The question a team asks first: is the LLM better than the best recommender it could run instead?
            "llm_vs_best_baseline": dg.MetadataValue.md("\n".join(f"- {line}" for line in standings)),
            **{f"{row.model}/{row.metric}@{row.k}": round(float(row.value), 4) for row in headline.itertuples()},
            **({"llm/generated_valid_id_rate": raw_valid} if raw_valid is not None else {}),
            f"metrics@{min(config.ks)}": frame_table(metrics_frame(metrics, min(config.ks)), index="metric"),
            f"metrics@{max(config.ks)}": frame_table(metrics_frame(metrics, max(config.ks)), index="metric"),
            f"relative_deltas_of_{focus}": frame_table(deltas_frame(metrics, focus, config.ks), index="metric"),
            "comparison_plot": dg.MetadataValue.md(f"![comparison](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "duration": duration(time.perf_counter() - started),
        },
        check_results=[beats_popularity(metrics, min(config.ks))],
    )


# What the warehouse alone feeds: no model, no GPU job (the LLM's lists come from llm_test_recommendations.py).
evaluation_assets = [*BASELINES, recommendation_metrics]

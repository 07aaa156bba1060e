"""Baselines and the evaluation asset: hand-made cases, then the small marketplace end to end,
including the leakage checks (nothing the baselines read is from the held-out period, and a
recommender that does see it scores higher)."""

import shutil
from datetime import timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from recsys_assets.evaluation import baselines
from recsys_assets.evaluation.assets import evaluation_assets, recommendation_metrics
from recsys_assets.evaluation.baseline_assets import BASELINE_RECOMMENDERS, BASELINES
from recsys_assets.evaluation.checks import BASELINE_LISTS, BEATS_POPULARITY, beats_popularity
from recsys_assets.evaluation.experiments import STUDY_METRICS, ExperimentsConfig, study_markdown, study_tables
from recsys_assets.evaluation.inputs import load_baseline_inputs
from recsys_assets.evaluation.tables import METRICS, RECOMMENDATIONS, write_recommendations
from resources.artifacts import ArtifactStore
from resources.splits import EvaluationSplit
from resources.warehouse import Warehouse

BASELINE_NAMES = list(BASELINE_RECOMMENDERS)
CUTOFF = pd.Timestamp("2026-01-10")


def purchases(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(ts=lambda f: pd.to_datetime(f["ts"]))


# Items 1 and 2 are bought together, 3 and 4 together; item 5 is bought once, recently.
MARKET = purchases(
    [
        (10, 1, "2026-01-01"), (10, 2, "2026-01-01"),
        (11, 1, "2026-01-02"), (11, 2, "2026-01-02"),
        (12, 3, "2026-01-03"), (12, 4, "2026-01-03"),
        (13, 3, "2026-01-04"), (13, 4, "2026-01-04"), (13, 1, "2026-01-04"),
        (14, 5, "2026-01-09"),
        (20, 1, "2026-01-12"),  # after the cut-off: user 20's history, never fitted on
    ]
)  # fmt: skip


def inputs_for(users) -> baselines.BaselineInputs:
    return baselines.baseline_inputs(MARKET, users, CUTOFF, CUTOFF + timedelta(days=5))


def top_items(recommendations: pd.DataFrame, user: int, n: int) -> list[int]:
    return recommendations[recommendations["user_id"] == user].sort_values("rank")["item_id"].head(n).tolist()


def test_popularity_counts_buyers_before_the_cutoff_ties_by_id():
    recommendations = baselines.global_popularity(inputs_for([10, 99]), n=3)
    # Item 1: 3 buyers before the cut-off (user 20's purchase is later); items 2, 3, 4: 2 buyers each.
    assert top_items(recommendations, 99, 3) == [1, 2, 3]
    assert top_items(recommendations, 10, 3) == [1, 2, 3]
    assert recommendations["rank"].tolist() == [1, 2, 3, 1, 2, 3]


def test_recent_popularity_ranks_the_window_first():
    recommendations = baselines.recent_popularity(inputs_for([99]), n=5, days=2)
    # Only item 5 was bought in the last 2 days; the rest follow in all-time order.
    assert top_items(recommendations, 99, 5) == [5, 1, 2, 3, 4]


def test_item_to_item_recommends_what_was_bought_together():
    recommendations = baselines.item_to_item(inputs_for([20, 99]), n=3, neighbours=10, half_life_days=30)
    # User 20 bought item 1: cosine 2/sqrt(3*2) with item 2, 1/sqrt(3*2) with items 3 and 4
    # (a tie, kept in popularity order); item 1 itself and item 5 score 0.
    assert top_items(recommendations, 20, 3) == [2, 3, 4]
    # A user without history gets the popular items.
    assert top_items(recommendations, 99, 3) == [1, 2, 3]


def test_ease_weights_are_the_zero_diagonal_ridge_solution():
    rng = np.random.default_rng(0)
    bought = (rng.random((40, 6)) < 0.4).astype(np.float64)
    weights = baselines.ease_weights(baselines.sp.csr_matrix(bought), l2=3.0)
    # Column j: ridge regression of item j on the other items, solved directly.
    for j in range(6):
        others = np.delete(np.arange(6), j)
        x = bought[:, others]
        direct = np.linalg.solve(x.T @ x + 3.0 * np.eye(5), x.T @ bought[:, j])
        np.testing.assert_allclose(weights[others, j], direct, rtol=1e-4, atol=1e-5)
        assert weights[j, j] == 0


def test_ease_ranks_the_co_purchased_item_first():
    recommendations = baselines.ease(inputs_for([20]), n=5, l2=0.5, max_items=100, half_life_days=30)
    assert top_items(recommendations, 20, 1) == [2]


def test_baseline_inputs_refuse_events_from_after_their_cutoffs():
    with pytest.raises(ValueError, match="on or after the cut-off"):
        baselines.BaselineInputs(MARKET, MARKET.iloc[:0], np.array([10]), CUTOFF, CUTOFF)
    with pytest.raises(ValueError, match="inside the evaluated period"):
        baselines.BaselineInputs(MARKET.iloc[:0], MARKET, np.array([10]), CUTOFF, CUTOFF)


def test_the_check_warns_unless_the_llm_beats_popularity_on_hit_rate_and_ndcg():
    def metrics(llm_hit_rate: float) -> pd.DataFrame:
        rows = [("global_popularity", "hit_rate", 0.3), ("global_popularity", "ndcg", 0.1), ("llm", "hit_rate", llm_hit_rate), ("llm", "ndcg", 0.2)]
        return pd.DataFrame([(model, metric, 10, value) for model, metric, value in rows], columns=["model", "metric", "k", "value"])

    assert beats_popularity(metrics(0.4), 10).passed
    behind = beats_popularity(metrics(0.25), 10)
    assert not behind.passed and behind.severity == dg.AssetCheckSeverity.WARN
    assert behind.metadata["llm/hit_rate@10"].value == 0.25
    without_llm = beats_popularity(metrics(0.4).query("model != 'llm'"), 10)
    assert not without_llm.passed and without_llm.metadata["missing_recommenders"].value == "llm"


# --- the small marketplace, end to end ----------------------------------------------------


def resources_for(warehouse_path, home) -> dict:
    return {
        "warehouse": Warehouse(database=str(warehouse_path)),
        "splits": EvaluationSplit(),
        "artifacts": ArtifactStore(root=str(home / "artifacts")),
    }


@pytest.fixture(scope="module")
def evaluated(featured_platform):
    result = dg.materialize(
        evaluation_assets, resources=resources_for(featured_platform.warehouse, featured_platform.home), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return featured_platform, result


def metadata_of(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    return {name: value.value for name, value in result.asset_materializations_for_node(key.to_python_identifier())[0].metadata.items()}


def latest_metrics(platform) -> pd.DataFrame:
    return platform.df(f"SELECT * FROM {METRICS} WHERE evaluated_at = (SELECT max(evaluated_at) FROM {METRICS})")


def test_every_baseline_writes_a_top_200_list_for_every_user(evaluated):
    platform, _ = evaluated
    users = platform.query("SELECT count(*) FROM staging.stg_users")[0][0]
    summary = platform.df(
        f"SELECT recommender, count(DISTINCT user_id) AS users, max(rank) AS longest, count(*) AS rows "
        f"FROM {RECOMMENDATIONS} GROUP BY recommender"
    ).set_index("recommender")
    assert set(BASELINE_NAMES) <= set(summary.index)
    for name in BASELINE_NAMES:
        assert summary.loc[name, "users"] == users
        assert summary.loc[name, "longest"] == 200


def test_metrics_cover_every_recommender_metric_and_k(evaluated):
    platform, result = evaluated
    metrics = latest_metrics(platform)
    assert set(metrics["model"]) >= set(BASELINE_NAMES)
    assert set(metrics["k"]) == {10, 50, 200}
    assert metrics.groupby(["model", "k"]).size().eq(12).all()
    values = metrics.set_index(["model", "metric", "k"])["value"]
    # The personalised baselines beat popularity on the planted tastes.
    for name in ("item_to_item", "ease"):
        assert values[name, "ndcg", 10] > values["global_popularity", "ndcg", 10]
    metadata = metadata_of(result, recommendation_metrics.key)
    deltas = metadata[f"relative_deltas_of_{metadata['compared_model']}"]  # a table, rendered inline
    assert "global_popularity" in [column.name for column in deltas.schema.columns]
    assert all(record.data["global_popularity"].endswith("%") for record in deltas.records)
    at_10 = metadata["metrics@10"]
    assert {record.data["metric"] for record in at_10.records} >= {"hit_rate", "ndcg", "valid_id_rate"}
    assert metadata["comparison_plot"].startswith("![comparison](data:image/png;base64,")
    checks = {(e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert (recommendation_metrics.key, BEATS_POPULARITY) in checks
    assert all(checks[baseline.key, BASELINE_LISTS] for baseline in BASELINES)  # every baseline lists every user


def test_baselines_read_nothing_from_the_held_out_period(evaluated, tmp_path):
    platform, _ = evaluated
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        dates = EvaluationSplit().dates(conn)
        inputs = load_baseline_inputs(conn, dates)
    assert inputs.training["ts"].max() < pd.Timestamp(dates.val_start)
    assert inputs.histories["ts"].max() < pd.Timestamp(dates.test_start)

    # Behaviour, not only inputs: rewrite every purchase from the training cut-off on, and
    # the fitted models must not move. Popularity lists stay the same for everyone; the
    # personalised lists too for every user without purchases in the validation days (their
    # histories are unchanged: test-period purchases never reach them).
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(platform.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute(
            "UPDATE staging.fct_purchases SET item_id = (SELECT max(item_id) FROM staging.stg_items) WHERE ts >= ?", [dates.val_start]
        )
        touched = conn.execute(
            "SELECT DISTINCT user_id FROM staging.fct_purchases WHERE ts >= ? AND ts < ?", [dates.val_start, dates.test_start]
        ).df()["user_id"]
    assert dg.materialize(BASELINES, resources=resources_for(copy, tmp_path), instance=dg.DagsterInstance.ephemeral()).success

    def recommendations(path) -> pd.DataFrame:
        with duckdb.connect(str(path), read_only=True) as conn:
            return conn.execute(f"SELECT * FROM {RECOMMENDATIONS} ORDER BY recommender, user_id, rank").df()

    original, rewritten = recommendations(platform.warehouse), recommendations(copy)
    for name in BASELINE_NAMES:
        before = original[original["recommender"] == name].reset_index(drop=True)
        after = rewritten[rewritten["recommender"] == name].reset_index(drop=True)
        if name.endswith("popularity"):
            pd.testing.assert_frame_equal(before, after)
        else:
            untouched = lambda frame: frame[~frame["user_id"].isin(touched)].reset_index(drop=True)  # noqa: E731
            assert len(untouched(before)) > 0
            pd.testing.assert_frame_equal(untouched(before), untouched(after))


def test_a_recommender_that_sees_the_test_period_scores_higher(evaluated):
    platform, result = evaluated
    with duckdb.connect(str(platform.warehouse), read_only=True) as conn:
        dates = EvaluationSplit().dates(conn)
        everything = conn.execute("SELECT user_id, item_id, ts FROM staging.fct_purchases ORDER BY user_id, ts, item_id").df()
        users = conn.execute("SELECT user_id FROM staging.stg_users").df()["user_id"]
    # EASE as the baseline computes it, but fitted on every purchase up to the last day.
    leaky = baselines.baseline_inputs(everything, users, pd.Timestamp(dates.end) + timedelta(days=1), dates.test_start)
    resources = resources_for(platform.warehouse, platform.home)
    with resources["warehouse"].get_connection() as conn:
        write_recommendations(conn, "oracle", baselines.ease(leaky, 200, l2=200.0, max_items=20_000, half_life_days=30.0))
    try:
        assert dg.materialize([recommendation_metrics], resources=resources, instance=dg.DagsterInstance.ephemeral()).success
        values = latest_metrics(platform).set_index(["model", "metric", "k"])["value"]
    finally:
        with resources["warehouse"].get_connection() as conn:
            write_recommendations(conn, "oracle", pd.DataFrame(columns=["user_id", "rank", "item_id", "score"]))
    for name in BASELINE_NAMES:
        for metric in ("hit_rate", "ndcg"):
            assert values["oracle", metric, 10] > values[name, metric, 10], (name, metric)


# --- the experiments job's plan and tables -------------------------------------------------


def test_experiments_train_once_per_strategy_and_generate_each_variant_once():
    config = ExperimentsConfig(strategies=["own", "similar_items", "combined"], chains=4, chains_strategy="similar_items", chain_counts=[1, 4, 10])
    assert config.variants() == {"own": [4], "similar_items": [1, 4, 10], "combined": [4]}


def test_study_tables_report_values_and_deltas_against_the_reference_row():
    rows = [
        (strategy, metric, k, value)
        for strategy in ("combined", "similar_items")
        for metric in STUDY_METRICS
        for k, value in ((10, 0.2), (200, 0.5))
    ] + [("combined", "ndcg", 10, 0.3)]
    results = pd.DataFrame(rows, columns=["strategy", "metric", "k", "value"])
    results.loc[results["strategy"] == "similar_items", "value"] *= 1.175
    values, deltas = study_tables(results, "strategy", "combined", [10])
    assert list(values.columns) == [f"{metric}@10" for metric in STUDY_METRICS]
    assert values.loc["similar_items", "hit_rate@10"] == pytest.approx(0.235)
    assert deltas.loc["similar_items"].tolist() == pytest.approx([0.175] * len(STUDY_METRICS))
    assert deltas.loc["combined"].tolist() == pytest.approx([0.0] * len(STUDY_METRICS))
    assert "(+18%)" in study_markdown(values, deltas, "combined")

"""Candidates layer on the small marketplace: tables, checks, and recovery of the planted structure.

Recovery is measured as a lift over a random baseline computed from the same data (e.g. how
often two random items share a co-purchase group), never against fixed magic numbers.
"""

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from recsys_assets.candidates import compute, top_k_search
from recsys_assets.candidates.assets import candidate_assets, candidate_checks
from recsys_assets.candidates.config import InterestClustersConfig, NeighboursConfig
from recsys_assets.candidates.tables import SIMILAR_ITEMS, TABLES, USER_VECTORS
from recsys_assets.candidates.warehouse_io import read_vectors
from resources.splits import EvaluationSplit

CLUSTERS = 24
ITEM_NEIGHBOURS = 10
# Few users per list, so the approximate (inverted-file) path runs on the small marketplace too.
USER_SEARCH = NeighboursConfig(search_list_size=200, search_probes=2)


LAYER_CONFIG = {
    "interest_clusters": InterestClustersConfig(clusters=CLUSTERS),
    "similar_items": NeighboursConfig(neighbours=ITEM_NEIGHBOURS),
    "similar_users": USER_SEARCH,
}


def run_layer(platform, only: str | None = None) -> dg.ExecuteInProcessResult:
    """Materialize the whole layer with its checks, or only the asset ``only``."""
    return dg.materialize(
        [*candidate_assets, *candidate_checks],
        resources=platform.resources(),
        instance=dg.DagsterInstance.ephemeral(),
        selection=None if only is None else [dg.AssetKey(["candidates", only])],
        run_config=dg.RunConfig(
            ops={f"candidates__{name}": config for name, config in LAYER_CONFIG.items() if only in (None, name)}
        ),
    )


@pytest.fixture(scope="module")
def layer(featured_platform):
    result = run_layer(featured_platform)
    assert result.success
    return result


@pytest.fixture(scope="module")
def truth(featured_platform) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = featured_platform.landing / "_truth"
    return pd.read_parquet(folder / "items.parquet"), pd.read_parquet(folder / "users.parquet")


def materialization(result: dg.ExecuteInProcessResult, name: str) -> dict:
    return result.asset_materializations_for_node(f"candidates__{name}")[0].metadata


def same_label_lift(pairs: pd.DataFrame, labels: pd.Series) -> tuple[float, float]:
    """Share of (id, neighbour) pairs with the same label, and that share for random distinct pairs."""
    same = (pairs.iloc[:, 0].map(labels).to_numpy() == pairs.iloc[:, 1].map(labels).to_numpy()).mean()
    counts = labels.value_counts().to_numpy()
    random_pair = (counts * (counts - 1)).sum() / (len(labels) * (len(labels) - 1))
    return float(same), float(random_pair)


def test_every_table_has_its_documented_columns(layer, featured_platform):
    for spec in TABLES:
        described = featured_platform.query(f"DESCRIBE {spec.qualified}")
        assert [(name, sql_type) for name, sql_type, *_ in described] == [(c.name, c.sql_type) for c in spec.columns]
        rows = featured_platform.query(f"SELECT count(*) FROM {spec.qualified}")[0][0]
        assert rows > 0
        assert materialization(layer, spec.name)["dagster/row_count"].value == rows


def test_asset_checks_pass(layer):
    evaluations = layer.get_asset_check_evaluations()
    assert len(evaluations) == len(candidate_checks)
    assert all(e.passed for e in evaluations), [(e.asset_key, e.check_name) for e in evaluations if not e.passed]


def test_similar_items_recover_copurchase_groups(layer, featured_platform, truth):
    items, _ = truth
    pairs = featured_platform.df(f"SELECT item_id, neighbour_item_id FROM {SIMILAR_ITEMS.qualified}")
    bought = featured_platform.df("SELECT item_id FROM candidates.item_vectors")["item_id"]
    group = items.set_index("item_id")["group_id"].loc[bought]
    same, random_pair = same_label_lift(pairs, group)
    assert same > 5 * random_pair, (same, random_pair)
    assert pairs.groupby("item_id").size().max() == ITEM_NEIGHBOURS


def test_similar_users_recover_planted_tastes(layer, featured_platform, truth):
    _, users = truth
    pairs = featured_platform.df("SELECT user_id, neighbour_user_id FROM candidates.similar_users")
    with_vector = featured_platform.df("SELECT user_id FROM candidates.user_vectors")["user_id"]
    # The current taste: user vectors weigh recent purchases more, and half the users drift.
    taste = users.set_index("user_id")["persona_end"].loc[with_vector]
    same, random_pair = same_label_lift(pairs, taste)
    assert same > 3 * random_pair, (same, random_pair)


def test_interest_clusters_follow_categories(layer, featured_platform, truth):
    items, _ = truth
    clusters = featured_platform.df("SELECT item_id, cluster_id FROM candidates.interest_clusters")
    assert clusters["cluster_id"].nunique() == CLUSTERS
    category = items.set_index("item_id")["category_index"]
    members = clusters.merge(clusters, on="cluster_id").query("item_id_x != item_id_y")
    same, random_pair = same_label_lift(members[["item_id_x", "item_id_y"]], category.loc[clusters["item_id"]])
    assert same > 3 * random_pair, (same, random_pair)


def test_candidates_come_from_the_users_clusters_and_tastes(layer, featured_platform, truth):
    items, _ = truth
    candidates = featured_platform.df("SELECT user_id, item_id, cluster_id FROM candidates.user_cluster_candidates")
    user_clusters = featured_platform.df("SELECT user_id, cluster_id FROM candidates.user_interest_clusters")
    outside = candidates.merge(user_clusters, on=["user_id", "cluster_id"], how="left", indicator=True)
    assert (outside["_merge"] == "both").all(), "a candidate came from a cluster the user is not near"

    # Candidates learn only from before the validation period (resources/splits.py): what a user
    # bought before then is never proposed; what they bought later is exactly what to predict.
    val_start = EvaluationSplit().dates(duckdb.connect(str(featured_platform.warehouse), read_only=True)).val_start
    bought = featured_platform.df(f"SELECT DISTINCT user_id, item_id FROM staging.fct_purchases WHERE ts < DATE '{val_start}'")
    assert candidates.merge(bought, on=["user_id", "item_id"]).empty, "an already bought item was proposed"

    # Candidates fall in the categories the user buys from far more often than catalogue items do.
    category = items.set_index("item_id")["category_index"]
    user_categories = bought.assign(category=bought["item_id"].map(category))[["user_id", "category"]].drop_duplicates()
    in_taste = candidates.assign(category=candidates["item_id"].map(category)).merge(user_categories, how="left", indicator=True)
    candidate_rate = (in_taste["_merge"] == "both").mean()
    catalogue_share = category.value_counts(normalize=True)
    expected = user_categories.groupby("user_id")["category"].apply(lambda c: catalogue_share.loc[c].sum())
    random_rate = candidates["user_id"].map(expected).mean()
    assert candidate_rate > 1.5 * random_rate, (candidate_rate, random_rate)


def test_approximate_user_search_reports_recall_against_exact(layer):
    metadata = materialization(layer, "similar_users")
    assert metadata["search_lists"].value > 1
    assert metadata["recall_vs_exact"].value >= 0.9


def test_approximate_search_is_exact_when_every_list_is_probed(featured_platform):
    with duckdb.connect(str(featured_platform.warehouse), read_only=True) as conn:
        _, vectors, _ = read_vectors(conn, USER_VECTORS)
    rows = np.arange(len(vectors))
    exact = top_k_search.exact_similar(vectors, rows, 20)
    lists = top_k_search.search_lists(vectors, list_size=100, probes=1_000, seed=0)
    assert lists.count > 1
    found = top_k_search.similar(vectors, 20, lists)
    # Same neighbour scores everywhere; ids may differ only among equal scores (users with
    # identical histories have identical vectors).
    np.testing.assert_allclose(found.scores, exact.scores, rtol=0, atol=1e-6)
    assert top_k_search.recall(found, exact) > 0.999
    fewer = top_k_search.search_lists(vectors, list_size=100, probes=1, seed=0)
    assert top_k_search.recall(top_k_search.similar(vectors, 20, fewer), exact) < 1.0


def test_rerun_replaces_the_table(layer, featured_platform):
    before = featured_platform.df(f"SELECT * FROM {SIMILAR_ITEMS.qualified} ORDER BY item_id, rank")
    again = run_layer(featured_platform, only="similar_items")
    assert again.success
    after = featured_platform.df(f"SELECT * FROM {SIMILAR_ITEMS.qualified} ORDER BY item_id, rank")
    pd.testing.assert_frame_equal(before, after)


def test_checks_catch_self_neighbours_bad_scores_and_missing_items(tmp_path):
    database = tmp_path / "broken.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA candidates")
        conn.execute("CREATE TABLE candidates.item_vectors AS SELECT * FROM (VALUES (11), (22), (33)) AS t(item_id)")
        conn.execute(
            "CREATE TABLE candidates.similar_items AS SELECT * FROM (VALUES (11, 1, 11, 0.5), (22, 1, 11, 1.5)) "
            "AS t(item_id, rank, neighbour_item_id, score)"
        )
    warehouse = DuckDBResource(database=str(database))
    results = {}
    for check in candidate_checks:
        spec = next(iter(check.check_specs))
        if spec.asset_key == dg.AssetKey(["candidates", "similar_items"]):
            results[spec.name] = check(warehouse=warehouse)
    assert not any(result.passed for result in results.values())
    assert {name: result.metadata["violations"].value for name, result in results.items()} == {
        "every_item_has_neighbours": 1,
        "no_self_neighbours": 1,
        "scores_in_range": 1,
    }


def test_opaque_ids_map_to_dense_rows_and_back():
    ids = np.array([987_654_321, 1_000_001, 987_654_321, 55_555_555], dtype=np.int64)
    interactions = compute.Interactions.from_events(ids, ids[::-1].copy(), np.zeros(4))
    assert interactions.shape == (3, 3)
    assert (interactions.user_ids[interactions.users] == ids).all()
    assert (compute.positions(interactions.user_ids, np.array([55_555_555, 42])) == [1, -1]).all()

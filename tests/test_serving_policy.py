"""What serving generates: one setting for product and evaluation, the repeat policy, the fallback, the candidate pool."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from recsys_assets.evaluation.llm_test_recommendations import llm_test_recommendations
from recsys_assets.serving.assets import popularity_fallback, user_recommendations
from resources.generation import GenerationSettings


def test_product_and_evaluation_lists_come_from_one_generation_setting():
    for asset in (user_recommendations, llm_test_recommendations):
        assert "generation" in asset.required_resource_keys
        # No run config of their own that could make the evaluated lists differ from the served ones.
        assert not getattr(asset.op.config_schema.config_type, "fields", {})


def test_the_fallback_serves_the_most_bought_items_without_the_users_own():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA staging")
    conn.execute("CREATE TABLE staging.stg_items AS SELECT * FROM range(1, 6) t(item_id)")
    # Item 1: 3 buyers, item 2: 2, item 3: 1; item 9 is not in the catalog any more.
    conn.execute(
        "CREATE TABLE staging.fct_purchases AS SELECT * FROM (VALUES (10, 1), (11, 1), (12, 1), (10, 2), (11, 2), (12, 3), (10, 9), (11, 9), (12, 9), (13, 9))"
        " t(user_id, item_id)"
    )
    bought = conn.execute("SELECT DISTINCT user_id, item_id FROM staging.fct_purchases").df()
    lists = popularity_fallback(conn, pd.Series([10, 99]), bought, max_items=2, keep_bought=False)
    by_user = lists.groupby("user_id")["item_id"].apply(list).to_dict()
    assert by_user == {10: [3, 4], 99: [1, 2]}
    kept = popularity_fallback(conn, pd.Series([10]), bought, max_items=2, keep_bought=True)
    assert kept["item_id"].tolist() == [1, 2] and kept["rank"].tolist() == [1, 2]


def test_the_repeat_policy_follows_the_data_unless_configured():
    assert GenerationSettings().keep_bought(0.31) == (True, "auto: keep bought items (repeat share 0.310 >= 0.15)")
    assert GenerationSettings().keep_bought(0.04)[0] is False
    assert GenerationSettings(include_bought=False).keep_bought(0.9) == (False, "configured: include_bought=False")


def test_the_repeat_share_counts_recent_purchases_the_user_made_before():
    from resources.generation import repeat_share_sql

    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA staging")
    # Before the 28-day window: user 1 bought item 7. In it: items 7 (a repeat) and 8 (new); after the cut-off: ignored.
    conn.execute(
        "CREATE TABLE staging.fct_purchases AS SELECT user_id, item_id, ts::TIMESTAMP AS ts FROM (VALUES "
        "(1, 7, '2026-01-01'), (1, 7, '2026-02-20'), (1, 8, '2026-02-21'), (1, 9, '2026-03-05')) t(user_id, item_id, ts)"
    )
    assert conn.execute(repeat_share_sql(), ["2026-03-01"]).fetchall()[0][0] == 0.5


def pool_purchases() -> pd.DataFrame:
    # Items 1..12 bought by ever fewer users (item 1 by 12 users, item 12 by one); user 100 bought 1 and 2.
    rows = [(user, item) for item in range(1, 13) for user in range(13 - item)] + [(100, 1), (100, 2)]
    return pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(ts=pd.Timestamp("2026-03-01"))


def pool_inputs():
    from recsys_assets.serving.candidate_pool import fit_pool_item_models, serving_inputs

    purchases = pool_purchases()
    return fit_pool_item_models(purchases), serving_inputs(purchases, [100, 200])


def test_short_pools_are_topped_up_with_popular_items_to_a_full_list():
    from recsys_assets.serving.candidate_pool import candidate_pool

    models, inputs = pool_inputs()
    pool = candidate_pool(models, inputs, ["own_frequency"], per_source=5, fill_to=6)
    by_user = pool.groupby("user_id")["item_id"].apply(list).to_dict()
    assert by_user[100] == [1, 2, 3, 4, 5, 6]  # its own two, then the most popular it lacks
    assert by_user[200] == [1, 2, 3, 4, 5, 6]  # a cold-start user: popular items only
    assert set(pool.loc[pool["item_id"] > 2, "source"]) == {"global_popularity"}
    assert len(candidate_pool(models, inputs, ["own_frequency"], per_source=5)) == 2  # no fill asked: the own purchases only


def test_the_fill_counts_only_what_the_repeat_policy_serves():
    from recsys_assets.serving.candidate_pool import candidate_pool

    bought = pd.DataFrame({"user_id": [100, 100], "item_id": [1, 2]})
    pool = candidate_pool(*pool_inputs(), ["own_frequency"], per_source=5, fill_to=6, excluded=bought)
    servable = pool[(pool["user_id"] == 100) & ~pool["item_id"].isin([1, 2])]
    assert servable["item_id"].tolist() == [3, 4, 5, 6, 7, 8]  # six items it can be served, besides the two it bought


def market_purchases() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 4_000
    return pd.DataFrame(
        {
            "user_id": rng.integers(1, 400, n),
            "item_id": (rng.zipf(1.6, n) % 150) + 1,
            "ts": pd.Timestamp("2026-03-01") + pd.to_timedelta(rng.integers(0, 90 * 86_400, n), unit="s"),
        }
    )


@pytest.mark.parametrize("source", ["own_frequency", "item_to_item", "global_popularity"])
def test_each_pool_source_ranks_as_its_baseline_does(source):
    from recsys_assets.evaluation.baseline_assets import BASELINE_RECOMMENDERS
    from recsys_assets.serving.candidate_pool import POOL_SOURCES, fit_pool_item_models, serving_inputs

    purchases = market_purchases()
    inputs = serving_inputs(purchases, range(1, 400))
    expected = BASELINE_RECOMMENDERS[source](inputs, 50)
    pd.testing.assert_frame_equal(POOL_SOURCES[source](fit_pool_item_models(inputs.training), inputs, 50), expected)


def test_a_shard_pool_from_its_own_purchases_equals_the_pool_from_everyones(tmp_path):
    """The item models are fitted once on every purchase (and stored); a shard then needs its users' purchases only."""
    from recsys_assets.serving.candidate_pool import candidate_pool, fit_pool_item_models, load_item_models, save_item_models, serving_inputs

    purchases = market_purchases()
    shard = list(range(100, 200))
    save_item_models(fit_pool_item_models(purchases), tmp_path)
    stored = load_item_models(tmp_path)
    sources = ["own_frequency", "item_to_item", "global_popularity"]
    everyone = candidate_pool(fit_pool_item_models(purchases), serving_inputs(purchases, shard), sources, per_source=20, fill_to=60)
    own = purchases[purchases["user_id"].isin(shard)]
    from_shard = candidate_pool(stored, serving_inputs(own, shard), sources, per_source=20, fill_to=60)
    pd.testing.assert_frame_equal(from_shard, everyone)
    assert set(from_shard["source"]) == set(sources)
    assert (from_shard.groupby("user_id").size() >= 60).all()


def test_an_unknown_pool_source_is_refused_with_the_choices():
    from recsys_assets.serving.candidate_pool import candidate_pool

    with pytest.raises(ValueError, match="ease.*choose from own_frequency, item_to_item, global_popularity"):
        candidate_pool(*pool_inputs(), ["ease"], per_source=5)

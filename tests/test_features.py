"""dbt feature models, built and tested through the real dbt-duckdb run on the small marketplace."""


import shutil

import dagster as dg
import duckdb

from recsys_assets.features.assets import dbt_daily_purchases
from resources.dbt import dbt_resource
from resources.warehouse import warehouse_resource


def test_dbt_tests_ran_as_asset_checks_and_passed(featured_platform):
    checks = featured_platform.run.get_asset_check_evaluations()
    dbt_checks = [c for c in checks if c.asset_key.path[0] in ("staging", "features")]
    assert len(dbt_checks) >= 15
    assert all(c.passed for c in dbt_checks), [c.check_name for c in dbt_checks if not c.passed]


def test_feature_tables_cover_every_user_and_item(featured_platform):
    p = featured_platform
    users = p.query("SELECT count(*) FROM raw.users")[0][0]
    items = p.query("SELECT count(*) FROM raw.items")[0][0]
    assert p.query("SELECT count(*) FROM features.user_features")[0][0] == users
    assert p.query("SELECT count(*) FROM features.item_features")[0][0] == items
    assert p.query("SELECT count(*) FROM staging.fct_purchases")[0][0] == p.query("SELECT count(*) FROM raw.purchases")[0][0]


def test_purchasing_power_ranks_buyers_of_dear_items_higher(featured_platform):
    frame = featured_platform.df(
        """
        SELECT u.purchasing_power, avg(f.price_percentile) AS paid_percentile
        FROM features.user_features u JOIN staging.fct_purchases p USING (user_id)
        JOIN features.item_features f USING (item_id)
        GROUP BY ALL
        """
    )
    assert frame["purchasing_power"].between(0, 1).all()
    assert frame["purchasing_power"].corr(frame["paid_percentile"], method="spearman") > 0.95


def test_histories_are_newest_first_and_capped(featured_platform):
    rows = featured_platform.query(
        "SELECT purchased_at, len(item_ids), purchases_in_window FROM features.user_purchase_histories"
    )
    for purchased_at, length, purchases in rows:
        assert purchased_at == sorted(purchased_at, reverse=True)
        assert length == min(purchases, 100)


def test_current_intent_holds_only_items_not_bought_since(featured_platform):
    reopened = featured_platform.query(
        """
        SELECT count(*) FROM (SELECT user_id, unnest(cart_item_ids) AS item_id FROM features.user_current_intent) c
        JOIN staging.fct_purchases p USING (user_id, item_id)
        WHERE p.ts > (SELECT max(ts) FROM raw.cart r WHERE r.user_id = c.user_id AND r.item_id = c.item_id)
        """
    )[0][0]
    assert reopened == 0
    assert featured_platform.query("SELECT count(*) FROM features.user_current_intent")[0][0] > 0


def test_incremental_day_rebuild_replaces_only_that_day(featured_platform, tmp_path):
    # Work on a copy: the session warehouse is shared with other tests.
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(featured_platform.warehouse, copy)
    day_counts = "SELECT event_date::VARCHAR, count(*) FROM staging.fct_purchases GROUP BY 1"
    with duckdb.connect(str(copy)) as conn:  # a corrected re-export of the last day, half as long
        day = conn.execute("SELECT max(event_date)::VARCHAR FROM staging.fct_purchases").fetchone()[0]
        before = dict(conn.execute(day_counts).fetchall())
        conn.execute(f"DELETE FROM raw.purchases WHERE event_date = '{day}' AND user_id % 2 = 0")
        kept = conn.execute(f"SELECT count(*) FROM raw.purchases WHERE event_date = '{day}'").fetchone()[0]

    resources = {"dbt": dbt_resource(str(copy)), "warehouse": warehouse_resource(str(copy))}
    try:
        result = dg.materialize([dbt_daily_purchases], partition_key=day, resources=resources, instance=dg.DagsterInstance.ephemeral())
    finally:
        dbt_resource(str(featured_platform.warehouse))
    assert result.success
    with duckdb.connect(str(copy), read_only=True) as conn:
        after = dict(conn.execute(day_counts).fetchall())
    assert after[day] == kept < before[day]
    assert {d: n for d, n in after.items() if d != day} == {d: n for d, n in before.items() if d != day}

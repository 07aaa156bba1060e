"""The product-team marts, built by dbt on recommendations written into a copy of the featured warehouse.

The recommendations here are test data in the serving contract (25 items per user, generated
three days ago), not the serving layer: the marts are checked against what they must derive.
"""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb
import pytest

from recsys_assets.marts.assets import dbt_marts
from recsys_assets.marts.checks import mart_checks
from resources.dbt import dbt_resource
from resources.warehouse import warehouse_resource

PER_USER = 25
RECOMMENDATIONS = f"""
CREATE SCHEMA IF NOT EXISTS marts;
CREATE TABLE marts.user_recommendations AS
SELECT user_id, rank, item_id, 1.0 / rank AS score, 'test-model' AS model_version,
       CAST(now() AS TIMESTAMP) - INTERVAL 3 DAY AS generated_at
FROM (
    SELECT u.user_id, i.item_id, row_number() OVER (PARTITION BY u.user_id ORDER BY hash(u.user_id, i.item_id)) AS rank
    FROM staging.stg_users u CROSS JOIN staging.stg_items i
)
WHERE rank <= {PER_USER}
"""


@pytest.fixture(scope="module")
def marts(featured_platform, tmp_path_factory):
    copy = tmp_path_factory.mktemp("marts") / "warehouse.duckdb"
    shutil.copy(featured_platform.warehouse, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute(RECOMMENDATIONS)
    with pytest.MonkeyPatch.context() as env:  # dbt_resource exports RECSYS_WAREHOUSE for dbt's profile
        env.setenv("RECSYS_WAREHOUSE", str(copy))
        result = dg.materialize(
            [dbt_marts, *mart_checks()],
            resources={"warehouse": warehouse_resource(str(copy)), "dbt": dbt_resource(str(copy))},
            instance=dg.DagsterInstance.ephemeral(),
        )
    with duckdb.connect(str(copy), read_only=True) as conn:
        yield result, conn


def checks_by_name(result) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def test_homepage_feed_has_the_top_slots_of_every_user_with_item_attributes(featured_platform, marts):
    _, conn = marts
    users = featured_platform.query("SELECT count(*) FROM staging.stg_users")[0][0]
    assert conn.execute("SELECT count(*), count(DISTINCT (user_id, rank)), max(rank) FROM marts.homepage_feed").fetchone() == (users * 20, users * 20, 20)
    assert conn.execute("SELECT count(*) FROM marts.homepage_feed WHERE category_id IS NULL OR price_segment IS NULL").fetchone()[0] == 0


def test_by_category_and_daily_summary_add_up_to_the_recommendations(marts):
    _, conn = marts
    total = conn.execute("SELECT count(*) FROM marts.user_recommendations").fetchone()[0]
    assert conn.execute("SELECT sum(recommendations), round(sum(share_of_recommendations), 6) FROM marts.recommendations_by_category").fetchone() == (total, 1.0)
    [(recommendations, coverage, top_share)] = conn.execute(
        "SELECT recommendations, catalog_coverage, top_10_item_share FROM marts.daily_recommendation_summary"
    ).fetchall()
    assert recommendations == total and 0 < coverage <= 1 and 0 < top_share < 1


def test_key_and_row_count_checks_pass_and_stale_recommendations_fail_freshness(marts):
    result, _ = marts
    assert result.success
    checks = checks_by_name(result)
    for mart in ("homepage_feed", "recommendations_by_category", "daily_recommendation_summary"):
        assert checks[(mart, "row_count_reconciles")], mart
        assert not checks[(mart, "recommendations_fresh")], mart  # generated three days ago
    dbt_key_tests = [name for (mart, name) in checks if name.startswith("unique")]
    assert len(dbt_key_tests) == 3 and all(checks[(m, n)] for (m, n) in checks if n.startswith("unique"))

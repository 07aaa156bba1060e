"""Asset checks on the marts beyond their dbt key tests: is the data fresh, do the rows add up.

A mart can be rebuilt on time from recommendations that stopped being regenerated, so the
freshness check looks at the data (the newest ``generated_at``), not at when the table was
built. The row-count checks reconcile each mart with ``marts.user_recommendations``.
"""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from recsys_assets.automation import DAILY_FRESHNESS
from recsys_assets.keys import USER_RECOMMENDATIONS_TABLE
from resources.warehouse import Warehouse

HOMEPAGE_SLOTS = 20  # dbt var homepage_feed_slots

# (what must hold, SQL for (expected, actual)) per mart.
RECONCILIATIONS = {
    "homepage_feed": (
        f"one row per user and slot up to {HOMEPAGE_SLOTS}",
        f"SELECT (SELECT count(*) FROM {USER_RECOMMENDATIONS_TABLE} WHERE rank <= {HOMEPAGE_SLOTS}), (SELECT count(*) FROM marts.homepage_feed)",
    ),
    "recommendations_by_category": (
        "every recommendation counted in exactly one category",
        f"SELECT (SELECT count(*) FROM {USER_RECOMMENDATIONS_TABLE}), (SELECT coalesce(sum(recommendations), 0) FROM marts.recommendations_by_category)",
    ),
    "daily_recommendation_summary": (
        "the newest generation day summarized with all its recommendations",
        f"SELECT (SELECT count(*) FROM {USER_RECOMMENDATIONS_TABLE} WHERE CAST(generated_at AS DATE) = (SELECT max(CAST(generated_at AS DATE)) FROM {USER_RECOMMENDATIONS_TABLE})), "
        "(SELECT coalesce(sum(recommendations), 0) FROM marts.daily_recommendation_summary "
        "WHERE summary_date = (SELECT max(summary_date) FROM marts.daily_recommendation_summary))",
    ),
}

# Hourly, and whenever the mart is rebuilt: stale data shows up even when nothing runs.
CHECK_CONDITION = (dg.AutomationCondition.any_deps_updated() | dg.AutomationCondition.cron_tick_passed("0 * * * *")).since_last_handled()


def _as_utc(moment: datetime) -> datetime:
    # generated_at may be TIMESTAMP (UTC by contract) or TIMESTAMPTZ.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _freshness_check(table: str) -> dg.AssetChecksDefinition:
    max_age = DAILY_FRESHNESS.fail_window.to_timedelta()

    @dg.asset_check(
        asset=dg.AssetKey(["marts", table]),
        name="recommendations_fresh",
        description=f"The newest generated_at in marts.{table} is at most {max_age} old.",
        automation_condition=CHECK_CONDITION,
    )
    def check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            newest = conn.execute(f"SELECT max(generated_at) FROM marts.{table}").fetchone()[0]
        age = datetime.now(timezone.utc) - _as_utc(newest) if newest else None
        return dg.AssetCheckResult(
            passed=age is not None and age <= max_age,
            metadata={"newest_generated_at": str(newest), "age_hours": round(age.total_seconds() / 3600, 1) if age else None},
        )

    return check


def _row_count_check(table: str) -> dg.AssetChecksDefinition:
    rule, sql = RECONCILIATIONS[table]

    @dg.asset_check(
        asset=dg.AssetKey(["marts", table]),
        name="row_count_reconciles",
        description=f"Non-empty and reconciles with {USER_RECOMMENDATIONS_TABLE}: {rule}.",
        automation_condition=CHECK_CONDITION,
    )
    def check(warehouse: Warehouse) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            expected, actual = conn.execute(sql).fetchone()
        return dg.AssetCheckResult(passed=0 < actual == expected, metadata={"expected": expected, "actual": actual})

    return check


def mart_checks() -> list[dg.AssetChecksDefinition]:
    return [check(table) for table in RECONCILIATIONS for check in (_freshness_check, _row_count_check)]

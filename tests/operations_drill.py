"""A drill code location: assets that go wrong on purpose, watched by the platform's real alert sensors.

tests/test_operations_e2e.py loads it next to the platform under the real dagster-daemon; the
platform's own policies are a day or a week long, too long to watch one fail in a test.
"""

from datetime import timedelta

import dagster as dg

from recsys_assets.sensors import alert_sensor, run_failure_alert
from resources.notifier import notifier_resource

CHECKED = dg.AssetKey(["drill", "checked"])


@dg.asset(
    key=CHECKED,
    group_name="drill",
    description="Materializes fine, fails its check, and is stale a minute later.",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=1)),
    check_specs=[dg.AssetCheckSpec("row_count_positive", asset=CHECKED)],
)
def checked_asset() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=False, description="0 rows", metadata={"rows": 0})])


@dg.asset(key=["drill", "broken"], group_name="drill", description="Always fails, like an export server that went away.")
def broken_asset() -> None:
    raise RuntimeError("the export server went away")


defs = dg.Definitions(
    assets=[checked_asset, broken_asset],
    sensors=[alert_sensor, run_failure_alert],
    resources={"notifier": notifier_resource()},
)

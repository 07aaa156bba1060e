"""Operational policies by layer, in one place: freshness, automation conditions, run retries.

Layer modules define *what* an asset computes; this module decides *when* it runs, how late
it may be, and how often a failed run is retried. definitions.py applies it to every asset
with ``with_layer_policies`` (a spec mapping keyed by the asset's group), so a new asset
inherits its layer's policy and a new layer fails tests/test_operations.py until it gets one.

The daily rhythm (UTC):

    landing sensor  a new event day in the landing folder -> ingest of exactly that day
    01:00           user and item snapshots reloaded (on_cron)
    on new data     staging/features/candidates/llm_data/marts rebuild (eager)
    Mon 00:00 tick  the model retrains once the week's first fresh data is in (on_cron)
    04:00 tick      recommendations are regenerated for every shard, and again after a new
                    model; a new shard gets its recommendations as soon as it is registered
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from recsys_assets.keys import MODEL_PROMOTION

NIGHTLY = "0 1 * * *"
WEEKLY = "0 0 * * 1"
DAILY_SERVING = "0 4 * * *"

AUTOMATION_SENSOR_INTERVAL_SECONDS = 60


@dataclass(frozen=True)
class RunRetries:
    """Run-level retries (``run_retries`` must be enabled in the instance's dagster.yaml).

    Op retry policies cannot be attached to an asset after it is defined, and run retries also
    cover what op retries cannot: a run worker or GPU pod that dies. ``on_step_failure=False``
    retries only such crashes; deterministic failures (bad input) would fail again anyway.
    """

    name: str
    max_retries: int
    on_step_failure: bool

    @property
    def tags(self) -> dict[str, str]:
        return {
            "dagster/max_retries": str(self.max_retries),
            "dagster/retry_on_asset_or_op_failure": str(self.on_step_failure).lower(),
            "dagster/retry_strategy": "FROM_FAILURE",
        }


# Orchestrator and dbt steps fail for real reasons (a bad export, a broken model): one retry
# for a crashed run only. GPU jobs lose pods and nodes: retry failed steps twice.
WAREHOUSE_RETRIES = RunRetries("warehouse", max_retries=1, on_step_failure=False)
GPU_RETRIES = RunRetries("gpu", max_retries=2, on_step_failure=True)


def _cadence(every: timedelta) -> dg.FreshnessPolicy:
    """Warn two hours after a run was due; fail once it is a whole cadence (a day, a week) late."""
    return dg.FreshnessPolicy.time_window(fail_window=every + timedelta(days=1), warn_window=every + timedelta(hours=2))


DAILY_FRESHNESS = _cadence(timedelta(days=1))
WEEKLY_FRESHNESS = _cadence(timedelta(days=7))

# Snapshots: the nightly export is reloaded on a cron (the landing sensor also reloads them
# when their files change, so a day's events never meet a stale user list).
NIGHTLY_RELOAD = dg.AutomationCondition.on_cron(NIGHTLY)

# Daily partitions downstream of ingest: any day whose upstream day changed, not only the
# latest one (``eager`` alone ignores late-arriving and re-delivered days).
EAGER_ANY_DAY = (
    dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()).with_label("eager_any_day")
)

# Unpartitioned assets downstream of daily partitions: ``eager`` would wait for every daily
# partition to exist, including the days before the data starts, which stay missing forever.
EAGER = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()).with_label("eager_allow_missing_history")

WEEKLY_RETRAIN = dg.AutomationCondition.on_cron(WEEKLY)

# Recommendations: daily, after every newly promoted model (the champion/challenger gate's
# output: a new model reaches serving only through it), and at once for a
# shard that was just registered. Not while an upstream or this shard is still running.
REFRESH_RECOMMENDATIONS = (
    (
        dg.AutomationCondition.newly_missing()
        | dg.AutomationCondition.cron_tick_passed(DAILY_SERVING)
        | dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets(MODEL_PROMOTION))
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("daily_and_after_new_model")


@dataclass(frozen=True)
class LayerPolicy:
    freshness: dg.FreshnessPolicy | None  # None: launched by hand, never late
    automation: dg.AutomationCondition | None  # None: started by a sensor, not by a condition
    retries: RunRetries
    daily_automation: dg.AutomationCondition | None = EAGER_ANY_DAY  # for the layer's daily partitions

    def automation_for(self, spec: dg.AssetSpec) -> dg.AutomationCondition | None:
        daily = isinstance(spec.partitions_def, dg.TimeWindowPartitionsDefinition)
        return self.daily_automation if daily else self.automation


LAYER_POLICIES: dict[str, LayerPolicy] = {
    # Event days are ingested by the landing sensor when they arrive (a cron would load an
    # empty day if the export is late, and the day would then look done).
    "ingest": LayerPolicy(DAILY_FRESHNESS, NIGHTLY_RELOAD, WAREHOUSE_RETRIES, daily_automation=None),
    "features": LayerPolicy(DAILY_FRESHNESS, EAGER, WAREHOUSE_RETRIES),
    "candidates": LayerPolicy(DAILY_FRESHNESS, EAGER, WAREHOUSE_RETRIES),
    "llm_data": LayerPolicy(DAILY_FRESHNESS, EAGER, WAREHOUSE_RETRIES),
    "model": LayerPolicy(WEEKLY_FRESHNESS, WEEKLY_RETRAIN, GPU_RETRIES),
    "serving": LayerPolicy(DAILY_FRESHNESS, REFRESH_RECOMMENDATIONS, GPU_RETRIES),
    "evaluation": LayerPolicy(WEEKLY_FRESHNESS, EAGER, WAREHOUSE_RETRIES),
    "marts": LayerPolicy(DAILY_FRESHNESS, EAGER, WAREHOUSE_RETRIES),
    # The experiments job trains a model per study variant (hours on CPU): launched by hand,
    # never by automation, and not part of a full materialization (recsys run).
    "experiments": LayerPolicy(None, None, GPU_RETRIES, daily_automation=None),
}
ON_DEMAND_GROUPS = tuple(group for group, policy in LAYER_POLICIES.items() if policy.automation is None and policy.freshness is None)


def layer_policy(group: str | None) -> LayerPolicy:
    if group not in LAYER_POLICIES:
        raise KeyError(f"No operational policy for asset group {group!r}: add one to LAYER_POLICIES in recsys_assets/automation.py")
    return LAYER_POLICIES[group]


def apply_layer_policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    policy = layer_policy(spec.group_name)
    return spec.replace_attributes(freshness_policy=policy.freshness, automation_condition=policy.automation_for(spec))


def with_layer_policies(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    return list(dg.map_asset_specs(apply_layer_policy, assets))


def automation_sensors() -> list[dg.AutomationConditionSensorDefinition]:
    """One automation sensor per retry policy, so that every run it launches carries its layer's retries."""
    groups_by_retries: dict[RunRetries, list[str]] = {}
    for group, policy in LAYER_POLICIES.items():
        if group not in ON_DEMAND_GROUPS:
            groups_by_retries.setdefault(policy.retries, []).append(group)
    return [
        dg.AutomationConditionSensorDefinition(
            f"automation_{retries.name}_layers",
            target=dg.AssetSelection.groups(*groups),
            run_tags=retries.tags,
            minimum_interval_seconds=AUTOMATION_SENSOR_INTERVAL_SECONDS,
            description=f"Evaluates the automation conditions of the {', '.join(groups)} layers "
            f"(recsys_assets/automation.py); their runs retry up to {retries.max_retries}x.",
        )
        for retries, groups in groups_by_retries.items()
    ]

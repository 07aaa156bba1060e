"""Materialize the whole graph headlessly, the way `recsys run` and the tests do.

Three stages, because a run holds one kind of partition:

1. everything that is daily-partitioned or unpartitioned, as one run whose daily assets
   backfill all days found in the landing folder (single-run backfill policies);
2. the user-range shards: new shards are registered for users outside the existing ones,
   then each shard is one run (in production: one GPU pod per shard);
3. what reads the shards (the marts), once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dagster as dg

from partitions import daily_partitions, user_shards
from recsys_assets.automation import ON_DEMAND_GROUPS
from partitions.user_shards import plan_new_shards
from resources.landing import LandingDataError

INFO_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def day_range_tags(days: list[date]) -> dict[str, str]:
    first_partition = daily_partitions.get_first_partition_key()
    if days[0].isoformat() < first_partition:
        raise LandingDataError(
            f"The landing data starts on {days[0]}, before the first daily partition {first_partition}. "
            f"Set RECSYS_FIRST_DAY={days[0]} (or earlier) and reload."
        )
    return {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }


def register_shards(instance: dg.DagsterInstance, warehouse) -> list[str]:
    """Add shards for users outside the registered ones; returns all shard keys."""
    existing = list(instance.get_dynamic_partitions(user_shards.name))
    with warehouse.get_connection() as conn:
        user_ids = [user_id for (user_id,) in conn.execute("SELECT user_id FROM staging.stg_users").fetchall()]
    new = [shard.key for shard in plan_new_shards(user_ids, existing)]
    if new:
        instance.add_dynamic_partitions(user_shards.name, new)
    return sorted([*existing, *new])


def materialize_everything(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    log: Callable[[str], None] = print,
) -> list[dg.ExecuteInProcessResult]:
    if defs is None:
        from recsys_assets.definitions import defs
    instance = instance or dg.DagsterInstance.get()
    resources = defs.resources
    days = resources["landing"].landing_days()
    if not days:
        raise LandingDataError(f"No event days found in the landing folder {resources['landing'].root}.")

    assets = [*defs.assets, *(defs.asset_checks or [])]
    shard_keys = [spec.key for spec in defs.resolve_all_asset_specs() if spec.partitions_def == user_shards]
    sharded = dg.AssetSelection.assets(*shard_keys)
    on_demand = dg.AssetSelection.groups(*ON_DEMAND_GROUPS)  # the experiments job: hours, by hand only

    def run(selection: dg.AssetSelection, **kwargs) -> dg.ExecuteInProcessResult:
        return dg.materialize(assets, selection=selection, instance=instance, resources=resources, run_config=INFO_LOGS, **kwargs)

    log(f"Stage 1: ingest and every unsharded layer for {days[0]} .. {days[-1]}")
    results = [run(dg.AssetSelection.all() - sharded.downstream() - on_demand, tags=day_range_tags(days))]
    if shard_keys:
        shards = register_shards(instance, resources["warehouse"])
        for number, key in enumerate(shards, start=1):
            log(f"Stage 2: shard {number}/{len(shards)} {key}")
            results.append(run(sharded, partition_key=key))
        downstream = sharded.downstream() - sharded - on_demand
        if downstream.resolve(defs.resolve_asset_graph()):
            log("Stage 3: what reads the shards (marts)")
            results.append(run(downstream))
    return results

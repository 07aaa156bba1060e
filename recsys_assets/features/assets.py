"""Features layer: the dbt project (dbt_project/) as assets.

Three dbt steps, named for what they build, in the order the data flows:

- ``dbt_staging``: the staged snapshots and carts/wishlists (unpartitioned, rebuilt);
- ``dbt_daily_purchases``: the daily models (tag ``daily``: fct_purchases), partitioned like
  the events they read and incremental in dbt; a backfill of many days is one dbt run over
  the whole range;
- ``dbt_features``: the feature models, rebuilt from the two above.

One step for staging and features together would sit both before and after the daily step,
and Dagster would run it as anonymous copies of itself (``_2``, ``_3`` in the run's steps).
"""


import json
from datetime import timedelta

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from partitions import daily_partitions
from resources.dbt import dbt_project, stream_build, translator
from resources.warehouse import WAREHOUSE_POOL, Warehouse




@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select="tag:daily",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=translator,
    pool=WAREHOUSE_POOL,
    name="dbt_daily_purchases",
)
def dbt_daily_purchases(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
    window = context.partition_time_window
    days = {"min_date": window.start.date().isoformat(), "max_date": (window.end - timedelta(days=1)).date().isoformat()}
    context.log.info(f"dbt build for days {days['min_date']} .. {days['max_date']}")
    with warehouse.lock_for_dbt(dbt.target):
        yield from stream_build(dbt, context, ["--vars", json.dumps(days)])


def dbt_build_step(name: str, select: str, exclude: str | None = None) -> dg.AssetsDefinition:
    """An unpartitioned ``dbt build`` of the selected models and their tests, holding the warehouse's writer lock."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        select=select,
        exclude=exclude,
        dagster_dbt_translator=translator,
        pool=WAREHOUSE_POOL,
        name=name,
    )
    def step(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        with warehouse.lock_for_dbt(dbt.target):
            yield from stream_build(dbt, context, [])

    return step


dbt_staging = dbt_build_step("dbt_staging", select="config.schema:staging", exclude="tag:daily")
dbt_features = dbt_build_step("dbt_features", select="config.schema:features")
feature_assets = [dbt_staging, dbt_daily_purchases, dbt_features]

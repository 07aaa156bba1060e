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
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import default_description_fn

from partitions import daily_partitions
from resources.dbt import dbt_project
from resources.warehouse import WAREHOUSE_POOL, Warehouse


# The team that owns each dbt schema; the schema is also the Dagster group (staging
# models belong to the features layer).
SCHEMA_OWNERS = {"staging": "team:data-platform", "features": "team:data-platform", "marts": "team:product-data"}
SCHEMA_GROUPS = {"staging": "features"}


class RecsysDbtTranslator(DagsterDbtTranslator):
    """Keys models by schema (features/user_features) and sources by source name (raw/purchases)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey([_schema(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        schema = _schema(dbt_resource_props)
        return SCHEMA_GROUPS.get(schema, schema)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [SCHEMA_OWNERS.get(_schema(dbt_resource_props), "team:data-platform")]

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        # The model's own description, as for every other asset; the SQL is a click away in the code reference.
        return default_description_fn(dbt_resource_props, display_raw_sql=False)

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return spec._replace(description=dbt_test_description(manifest["nodes"][unique_id]))


def dbt_test_description(test: Mapping[str, Any]) -> str:
    """What a dbt test asserts, in words: dbt's generic tests carry no description of their own."""
    meta = test.get("test_metadata") or {}
    kwargs = meta.get("kwargs", {})
    column = kwargs.get("column_name", "")
    model = (test.get("attached_node") or "").rsplit(".", 1)[-1]
    sentences = {
        "unique": f"No two rows of {model} share {column}.",
        "not_null": f"{column} is never NULL in {model}.",
        "value_between": f"{column} lies between {kwargs.get('min_value')} and {kwargs.get('max_value')} in {model}.",
        "accepted_values": f"{column} in {model} is one of {kwargs.get('values')}.",
        "relationships": f"Every {column} of {model} exists in {kwargs.get('to')}.{kwargs.get('field')}.",
    }
    return test.get("description") or sentences.get(meta.get("name"), f"dbt test {test['name']} on {model}.")


def _schema(dbt_resource_props: Mapping[str, Any]) -> str:
    return dbt_resource_props["config"].get("schema") or "main"


translator = RecsysDbtTranslator()


@dbt_assets(
    manifest=dbt_project.manifest_path,
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
        yield from dbt.cli(["build", "--vars", json.dumps(days)], context=context).stream()


def dbt_build_step(name: str, select: str, exclude: str | None = None) -> dg.AssetsDefinition:
    """An unpartitioned ``dbt build`` of the selected models and their tests, holding the warehouse's writer lock."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        select=select,
        exclude=exclude,
        dagster_dbt_translator=translator,
        pool=WAREHOUSE_POOL,
        name=name,
    )
    def step(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: Warehouse):
        with warehouse.lock_for_dbt(dbt.target):
            yield from dbt.cli(["build"], context=context).stream()

    return step


dbt_staging = dbt_build_step("dbt_staging", select="config.schema:staging", exclude="tag:daily")
dbt_features = dbt_build_step("dbt_features", select="config.schema:features")
feature_assets = [dbt_staging, dbt_daily_purchases, dbt_features]

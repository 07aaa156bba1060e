"""The dbt project: where it is, how its nodes become Dagster assets, and the resource that runs it.

The manifest is prepared outside of import (``make install`` runs ``dbt parse``; ``dagster
dev`` prepares it on load), so loading the code location never shells out to dbt. The dbt
target (duckdb locally, spark at scale) is a setting: README, "Running at scale".
"""

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import default_description_fn

from resources import settings

dbt_project = DbtProject(
    project_dir=settings.PROJECT_DIR / "dbt_project",
    profiles_dir=settings.PROJECT_DIR / "dbt_project",
    target=settings.dbt_target(),
)
dbt_project.prepare_if_dev()
PARTIAL_PARSE = "partial_parse.msgpack"


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


def stream_build(dbt: DbtCliResource, context: dg.AssetExecutionContext, args: list[str]):
    """``dbt build`` with ``args``, streamed as Dagster events; keeps its parse for the next invocation.

    dagster-dbt seeds every invocation with ``$DBT_TARGET_PATH/partial_parse.msgpack``. The one
    ``make install`` wrote was parsed against another warehouse path, and dbt reparses the whole
    project when the profile differs (seconds per invocation): each build leaves its own parse
    there, so the next one in the same state folder only rereads what changed.
    """
    invocation = dbt.cli(["build", *args], context=context)
    yield from invocation.stream()
    parsed = invocation.target_path / PARTIAL_PARSE  # absolute: dbt_resource sets an absolute DBT_TARGET_PATH
    # A parse with --vars is one only a build with the same vars could reuse: the daily build's is not kept.
    if parsed.exists() and "--vars" not in args:
        kept = invocation.target_path.parent / PARTIAL_PARSE
        partial = kept.with_name(f"{PARTIAL_PARSE}.{os.getpid()}.tmp")
        shutil.copy(parsed, partial)
        partial.replace(kept)  # atomic: two builds at once never leave half a file


# Code references: every dbt asset's page links to its .sql file.
translator = RecsysDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


def dbt_resource(warehouse_path: str) -> DbtCliResource:
    # dbt takes the warehouse path from its profile, which reads the environment: export the
    # path the warehouse resource uses so both always write to the same file.
    os.environ["RECSYS_WAREHOUSE"] = warehouse_path
    # Each invocation's artifacts go to a folder of its own under the platform's state, not the
    # source tree. The warehouse path is part of dbt's profile, so a parse kept per state folder
    # is one dbt can reuse (partial parsing): see stream_build.
    os.environ["DBT_TARGET_PATH"] = str(Path(warehouse_path).parent / "dbt-target")
    # dbt is installed beside this interpreter; a shell without the venv activated still finds it.
    executable = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    return DbtCliResource(project_dir=dbt_project, target=settings.dbt_target(), dbt_executable=executable)

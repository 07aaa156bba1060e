"""The code location loads, and every asset carries what a person looks for in the UI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_assets.definitions import defs

PROJECT = Path(__file__).resolve().parent.parent


def all_specs():
    return sorted(defs.resolve_all_asset_specs(), key=lambda spec: spec.key.to_user_string())  # one order in every xdist worker


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.key.to_user_string())
def test_every_asset_is_documented_grouped_owned_and_kinded(spec):
    assert spec.description, "missing description"
    assert spec.group_name and spec.group_name != "default", "missing group"
    assert spec.owners, "missing owner"
    assert spec.kinds, "missing kinds"
    assert "Raw SQL" not in spec.description, "reads like code, not like the other assets"


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.key.to_user_string())
def test_every_asset_links_to_its_source_file(spec):
    references = spec.metadata["dagster/code_references"].code_references
    assert references and all(Path(reference.file_path).is_file() for reference in references)
    assert all(Path(reference.file_path).is_relative_to(PROJECT) for reference in references)


def all_check_keys():
    return sorted(defs.resolve_asset_graph().asset_check_keys, key=str)


@pytest.mark.parametrize("key", all_check_keys(), ids=lambda key: f"{key.asset_key.to_user_string()}:{key.name}")
def test_every_check_says_what_it_asserts(key):
    description = defs.resolve_asset_graph().get_check_spec(key).description
    assert description and not description.startswith("dbt test "), "no description in the UI"


def test_dbt_tests_are_described_in_words():
    from resources.dbt import dbt_test_description

    unique = {"name": "unique_stg_users_user_id", "attached_node": "model.recsys.stg_users",
              "test_metadata": {"name": "unique", "kwargs": {"column_name": "user_id"}}}  # fmt: skip
    assert dbt_test_description(unique) == "No two rows of stg_users share user_id."
    between = {"name": "x", "attached_node": "model.recsys.item_features",
               "test_metadata": {"name": "value_between", "kwargs": {"column_name": "price_segment", "min_value": 1, "max_value": 5}}}  # fmt: skip
    assert dbt_test_description(between) == "price_segment lies between 1 and 5 in item_features."


def test_layers_are_grouped():
    groups = {spec.group_name for spec in all_specs()}
    assert {"ingest", "features"} <= groups


def test_dagster_definitions_validate_passes_on_the_workspace():
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dg_check_defs_loads_the_project():
    """`dg` finds the project from pyproject.toml ([tool.dg.project]) and loads its definitions."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(bin_dir.parent)}
    result = subprocess.run([str(bin_dir / "dg"), "check", "defs"], cwd=PROJECT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

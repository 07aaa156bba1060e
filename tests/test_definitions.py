"""The code location loads, and every asset carries what a person looks for in the UI."""

import subprocess
import sys
from pathlib import Path

import pytest

from recsys_assets.definitions import defs

PROJECT = Path(__file__).resolve().parent.parent


def all_specs():
    return list(defs.resolve_all_asset_specs())


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.key.to_user_string())
def test_every_asset_is_documented_grouped_owned_and_kinded(spec):
    assert spec.description, "missing description"
    assert spec.group_name and spec.group_name != "default", "missing group"
    assert spec.owners, "missing owner"
    assert spec.kinds, "missing kinds"


def test_layers_are_grouped():
    groups = {spec.group_name for spec in all_specs()}
    assert {"ingest", "features"} <= groups


def test_dagster_definitions_validate_passes_on_the_workspace():
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

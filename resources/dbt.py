"""The dbt project and the resource that runs it.

The manifest is prepared outside of import (``make install`` runs
``dagster-dbt project prepare-and-package``; ``dagster dev`` prepares it on load), so loading
the code location never shells out to dbt.
"""

import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from resources import settings

# duckdb locally; a `spark` target joins in production (README, "Running at scale").
DBT_TARGET = os.environ.get("RECSYS_DBT_TARGET", "duckdb")

dbt_project = DbtProject(
    project_dir=settings.PROJECT_DIR / "dbt_project",
    profiles_dir=settings.PROJECT_DIR / "dbt_project",
    target=DBT_TARGET,
)
dbt_project.prepare_if_dev()


def dbt_resource(warehouse_path: str) -> DbtCliResource:
    # dbt takes the warehouse path from its profile, which reads the environment: export the
    # path the warehouse resource uses so both always write to the same file.
    os.environ["RECSYS_WAREHOUSE"] = warehouse_path
    # dbt is installed beside this interpreter; a shell without the venv activated still finds it.
    executable = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")
    return DbtCliResource(project_dir=dbt_project, target=DBT_TARGET, dbt_executable=executable)

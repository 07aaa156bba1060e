"""The DuckDB warehouse: one file at ``$RECSYS_HOME/warehouse.duckdb``.

DuckDB allows one writing process per file. Every asset that writes here runs in the
``warehouse`` concurrency pool (limit 1, see dagster.yaml), and DuckDBResource retries while
another process holds the lock.
"""

from dagster_duckdb import DuckDBResource

from resources import settings

WAREHOUSE_POOL = "warehouse"


def warehouse_resource(path: str | None = None) -> DuckDBResource:
    database = path or str(settings.warehouse_path())
    settings.recsys_home().mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=database)

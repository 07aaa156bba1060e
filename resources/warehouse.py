"""The DuckDB warehouse: one file at ``$RECSYS_HOME/warehouse.duckdb``.

DuckDB allows one writing process per file. Every asset that writes here runs in the
``warehouse`` concurrency pool (limit 1, see dagster_home/dagster.yaml), and the resource
retries while another process holds the lock.
"""

from contextlib import contextmanager

from dagster_duckdb import DuckDBResource

from resources import settings

WAREHOUSE_POOL = "warehouse"


class Warehouse(DuckDBResource):
    """DuckDBResource that also closes its connection when the step fails.

    The upstream resource closes only on success; a failed step would otherwise keep the
    file locked for the rest of an in-process run (and for the tests that follow).
    """

    @contextmanager
    def get_connection(self):
        with super().get_connection() as conn:
            try:
                yield conn
            finally:
                conn.close()


def warehouse_resource(path: str | None = None) -> Warehouse:
    database = path or str(settings.warehouse_path())
    settings.recsys_home().mkdir(parents=True, exist_ok=True)
    return Warehouse(database=database)

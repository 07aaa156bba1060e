"""Puts the warehouse's test-only commit pause (resources/warehouse.py, CommitPause) into dbt.

tests/test_faults.py puts this folder on PYTHONPATH of the runs it kills. dbt-duckdb opens the
warehouse from the dbt process, where the Warehouse resource's connection is not used; its
cursor is wrapped here so that dbt's own transactions stop before COMMIT just the same.
"""

import os
import sys

if os.environ.get("RECSYS_FAULT_PAUSE_AT_COMMIT") and os.path.basename(sys.argv[0] if sys.argv else "") == "dbt":
    from dbt.adapters.duckdb.environments.local import DuckDBCursorWrapper

    from resources.warehouse import commit_pause

    _execute = DuckDBCursorWrapper.execute

    def execute(self, sql, bindings=None):
        commit_pause().before(sql)
        return _execute(self, sql, bindings)

    DuckDBCursorWrapper.execute = execute

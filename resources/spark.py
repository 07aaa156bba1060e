"""Spark for the scale-out paths (README, "Running at scale"): the Spark candidate engine.

dbt on Spark does not go through here: its profile (dbt_project/profiles.yml, output
``spark``) opens its own session or connects to a Thrift server.

The session is described by the environment (``settings.spark_properties``: RECSYS_SPARK_*)
so that the same code runs on a laptop (``local[*]``), in tests (``local[2]``) and against a
cluster (``spark://...``, ``k8s://...``, ``yarn``) without edits. The resource is
dagster-pyspark's lazy one: the JVM starts (about 15 s) only when a Spark step runs, never
when the code location loads.
"""

from __future__ import annotations

import os
import sys

from dagster_pyspark import LazyPySparkResource

from resources import settings


def spark_config() -> dict[str, str]:
    """The environment's Spark properties (master, driver memory, shuffle partitions, warehouse dir) and the fixed ones."""
    return {
        "spark.app.name": "recsys-platform",
        # spark.driver.memory is only honoured when the session starts the JVM (local mode); a
        # cluster sets its own. Spark's default of 200 shuffle partitions turns every small
        # shuffle into 200 tasks; adaptive execution still coalesces or splits from the setting.
        **settings.spark_properties(),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Timestamps from the warehouse carry no zone: read and compare them as UTC wall time.
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
    }


def spark_resource(overrides: dict[str, str] | None = None) -> LazyPySparkResource:
    """The engine's Spark resource: spark_config() with ``overrides`` on top (tests, benchmarks)."""
    # Python workers run the engine's pandas UDFs, which import this project and its numpy /
    # scikit-learn: in local mode they must be this interpreter, not the first python3 on
    # PATH. PySpark reads only the environment variable; a cluster image sets its own.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return LazyPySparkResource(spark_config={**spark_config(), **(overrides or {})})

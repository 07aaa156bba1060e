"""The one SparkSession of the Spark tests (tests/test_spark_*.py), local[2], started once.

Every Spark entry point (dbt-spark's session method, the Spark candidate engine) asks for
the session with getOrCreate, so they all run in this one and the JVM starts once (~15 s).
"""

from __future__ import annotations

import pytest
from resources.spark import spark_resource


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    overrides = {
        "spark.master": "local[2]",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
    }
    session = spark_resource(overrides).spark_session
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()

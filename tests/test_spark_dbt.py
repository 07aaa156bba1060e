"""dbt on Spark: the feature models built by dbt-spark (session method, local[2]) match DuckDB's.

The raw tables are exported from the session's DuckDB warehouse to Parquet and registered in
the Spark catalog, as production registers its exports; dbt then runs in this process, so its
session method picks up the tests' SparkSession (tests/spark_session.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dbt.cli.main import dbtRunner

from resources.dbt import dbt_project
from tests.spark_session import spark  # noqa: F401  (the session-scoped SparkSession fixture)

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

RAW_TABLES = ("users", "items", "purchases", "wishlist", "cart")


def register_raw_tables(spark, warehouse: Path, folder: Path, replace: dict[str, str] | None = None) -> None:  # noqa: F811
    """raw.<table> in Spark over a Parquet export of the warehouse's raw.<table> (or of ``replace[table]``, a query)."""
    spark.sql("CREATE DATABASE IF NOT EXISTS raw")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        for table in RAW_TABLES:
            path = folder / f"{table}.parquet"
            select = (replace or {}).get(table, f"SELECT * FROM raw.{table}")
            conn.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
            spark.sql(f"DROP TABLE IF EXISTS raw.{table}")
            spark.sql(f"CREATE TABLE raw.{table} USING parquet LOCATION '{path}'")


def dbt_spark(tmp: Path, *args: str) -> None:
    """Run dbt against the spark target in this process; its output stays in ``tmp``."""
    result = dbtRunner().invoke(
        [
            *args,
            "--target", "spark",
            "--project-dir", str(dbt_project.project_dir),
            "--profiles-dir", str(dbt_project.profiles_dir),
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--quiet",
        ]
    )
    assert result.success, result.exception or [str(r.message) for r in result.result or [] if r.status not in ("success", "pass")]


@pytest.fixture(scope="module")
def spark_features(featured_platform, spark, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("dbt-spark")
    register_raw_tables(spark, featured_platform.warehouse, tmp)
    # The feature layer: staging and features models with their dbt tests (the marts read the
    # serving layer's output, which this test does not produce).
    dbt_spark(tmp, "build", "--select", "path:models/staging", "path:models/features")
    return tmp


def both(featured_platform, spark, table: str, order: str) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: F811
    """The DuckDB and the Spark version of a table, same row order."""
    duck = featured_platform.df(f"SELECT * FROM {table} ORDER BY {order}")
    on_spark = spark.sql(f"SELECT * FROM {table} ORDER BY {order}").toPandas()
    return duck, on_spark[list(duck.columns)]


def as_lists(column: pd.Series) -> list[list]:
    return [list(value) for value in column]


def test_histories_and_intent_lists_match_duckdb(spark_features, featured_platform, spark):  # noqa: F811
    duck, on_spark = both(featured_platform, spark, "features.user_purchase_histories", "user_id")
    assert len(on_spark) == len(duck) > 0
    assert as_lists(on_spark["item_ids"]) == as_lists(duck["item_ids"])  # newest first, same tie order, same cap
    assert (on_spark["purchases_in_window"].to_numpy() == duck["purchases_in_window"].to_numpy()).all()

    duck, on_spark = both(featured_platform, spark, "features.user_current_intent", "user_id")
    assert len(on_spark) == len(duck) > 0
    for column in ("wishlist_item_ids", "cart_item_ids"):
        assert as_lists(on_spark[column]) == as_lists(duck[column]), column


def test_user_and_item_features_match_duckdb(spark_features, featured_platform, spark):  # noqa: F811
    duck, on_spark = both(featured_platform, spark, "features.item_features", "item_id")
    for column in ("item_id", "price_segment", "purchases_6m", "buyers_6m", "popularity_rank"):
        assert (on_spark[column].to_numpy() == duck[column].to_numpy()).all(), column
    duck, on_spark = both(featured_platform, spark, "features.user_features", "user_id")
    assert (on_spark["purchases_6m"].to_numpy() == duck["purchases_6m"].to_numpy()).all()
    # purchasing_power ranks users by a mean: the engines sum in different orders, so near-ties
    # may swap by a float rounding, moving a user by at most one rank step.
    power, duck_power = on_spark["purchasing_power"].to_numpy(float), duck["purchasing_power"].to_numpy(float)
    assert (np.isnan(power) == np.isnan(duck_power)).all()
    difference = np.abs(np.nan_to_num(power - duck_power))
    assert difference.max() <= 1.5 / len(duck) and (difference < 1e-9).mean() > 0.99


def test_spark_candidate_engine_reads_purchases_from_spark_when_dbt_runs_there(spark_features, featured_platform, spark, tmp_path):  # noqa: F811
    from recsys_assets.candidates.spark_io import SparkTables
    from resources.artifacts import ArtifactStore

    windows = {}
    for target in ("duckdb", "spark"):
        tables = SparkTables(spark, ArtifactStore(root=str(tmp_path)), target)  # the warehouse export goes to the artifact store
        with duckdb.connect(str(featured_platform.warehouse), read_only=True) as conn:
            frame, window = tables.window_purchases(conn, 30)
            windows[target] = (frame.count(), frame.agg({"age_days": "sum"}).first()[0], window)
    assert windows["spark"][0] == windows["duckdb"][0] > 0
    assert windows["spark"][1] == pytest.approx(windows["duckdb"][1])
    assert windows["spark"][2] == windows["duckdb"][2]


def test_incremental_day_rebuild_replaces_only_that_day(spark_features, featured_platform, spark, tmp_path):  # noqa: F811
    day_counts = "SELECT CAST(event_date AS STRING) AS day, count(*) AS n FROM staging.fct_purchases GROUP BY 1"
    before = dict(spark.sql(day_counts).collect())
    day = max(before)
    # A corrected re-export of the last day, half as long.
    register_raw_tables(
        spark,
        featured_platform.warehouse,
        tmp_path,
        {"purchases": f"SELECT * FROM raw.purchases WHERE NOT (event_date = '{day}' AND user_id % 2 = 0)"},
    )
    kept = spark.sql(f"SELECT count(*) FROM raw.purchases WHERE event_date = '{day}'").first()[0]
    dbt_spark(spark_features, "run", "--select", "fct_purchases", "--vars", json.dumps({"min_date": day, "max_date": day}))
    after = dict(spark.sql(day_counts).collect())
    assert after[day] == kept < before[day]
    assert {d: n for d, n in after.items() if d != day} == {d: n for d, n in before.items() if d != day}

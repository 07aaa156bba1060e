"""Where the Spark candidate steps (spark.py) read and write.

Each step reads its inputs as Parquet from the artifact store (``<artifacts>/candidates/<table>``,
written by the step before it) and writes its own table there, then loads it into the
warehouse (warehouse_io.load_into_warehouse), which is what the checks and readers use. The
purchases come from ``staging.fct_purchases``: the Spark table when dbt runs on Spark, else an
export of the DuckDB warehouse table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_assets.candidates.tables import TableSpec
from recsys_assets.keys import FCT_PURCHASES_TABLE
from resources.artifacts import ArtifactStore


@dataclass(frozen=True)
class SparkTables:
    """The session the steps run in, the store they pass Parquet through, and dbt's target."""

    spark: SparkSession
    artifacts: ArtifactStore
    dbt_target: str

    def path(self, spec: TableSpec) -> str:
        return str(self.artifacts.path("candidates", spec.name))

    def read(self, spec: TableSpec) -> DataFrame:
        path = self.path(spec)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"{path} is missing: materialize candidates/{spec.name} with RECSYS_CANDIDATE_ENGINE=spark first "
                "(the Spark steps read each other's Parquet, not the warehouse)."
            )
        return self.spark.read.parquet(path)

    def write(self, frame: DataFrame, spec: TableSpec) -> str:
        """Write ``frame`` as the Parquet of ``spec`` (columns in contract order); returns the path."""
        path = self.path(spec)
        frame.select(*[c.name for c in spec.columns]).write.mode("overwrite").parquet(path)
        return path

    def purchases(self, conn: duckdb.DuckDBPyConnection) -> DataFrame:
        """staging.fct_purchases: the Spark table when dbt builds on Spark, else the warehouse's, exported."""
        if self.dbt_target == "spark":
            return self.spark.table(FCT_PURCHASES_TABLE)
        path = str(self.artifacts.path("candidates", "_input", "fct_purchases.parquet"))
        conn.execute(f"COPY (SELECT event_date, user_id, item_id, ts FROM {FCT_PURCHASES_TABLE}) TO '{path}' (FORMAT parquet)").fetchall()
        return self.spark.read.parquet(path)

    def window_purchases(
        self, conn: duckdb.DuckDBPyConnection, history_days: int, end_day: date | None = None
    ) -> tuple[DataFrame, dict[str, str]]:
        """(user_id, item_id, age_days) of the ``history_days`` days up to ``end_day``, as warehouse_io.read_window_purchases."""
        source = self.purchases(conn)
        end = end_day or source.agg(F.max("event_date")).first()[0]
        if end is None:
            raise ValueError(f"{FCT_PURCHASES_TABLE} is empty: materialize the features layer first.")
        window_end = F.lit(f"{end + timedelta(days=1)} 00:00:00").cast("timestamp")
        seconds = F.unix_micros(window_end) - F.unix_micros(F.col("ts").cast("timestamp"))
        in_window = (F.col("event_date") > F.lit(end - timedelta(days=history_days))) & (F.col("event_date") <= F.lit(end))
        frame = source.where(in_window).select(
            F.col("user_id").cast("long"), F.col("item_id").cast("long"), (seconds / 86_400e6).alias("age_days")
        )
        return frame, {"window_start": str(end - timedelta(days=history_days - 1)), "window_end": str(end)}

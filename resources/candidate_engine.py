"""The candidate engine: which implementation computes the candidate tables, chosen by configuration.

``sklearn`` runs the steps of recsys_assets/candidates/steps.py in the run process; ``spark``
runs those of recsys_assets/candidates/spark.py (needs the ``spark`` extra) in the Spark
session of resources/spark.py, passing Parquet through the artifact store. Both write the same
tables, so the assets, their configs and checks do not change with the engine.
default_resources() binds it from RECSYS_CANDIDATE_ENGINE (``candidate_engine_resource``);
resources with different engines can run in one process.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Literal, Protocol

import dagster as dg

from resources import settings
from resources.artifacts import ArtifactStore

if TYPE_CHECKING:
    import duckdb

    from recsys_assets.candidates.report import StepReport


class CandidateSteps(Protocol):
    """The step functions both engines provide (keyword arguments: the assets' configs)."""

    def item_vectors(
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, dimensions: int, seed: int, end_day: date | None = None
    ) -> StepReport: ...

    def user_vectors(
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, recency_half_life_days: float, end_day: date | None = None
    ) -> StepReport: ...

    def interest_clusters(self, conn: duckdb.DuckDBPyConnection, *, clusters: int, seed: int) -> StepReport: ...

    def user_interest_clusters(self, conn: duckdb.DuckDBPyConnection, *, clusters_per_user: int) -> StepReport: ...

    def user_cluster_candidates(
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, candidates_per_user: int, end_day: date | None = None
    ) -> StepReport: ...

    def similar_items(self, conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport: ...

    def similar_users(self, conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport: ...


class CandidateEngine(dg.ConfigurableResource):
    """The engine of the candidates layer, with what the Spark engine runs on."""

    engine: Literal["sklearn", "spark"] = "sklearn"
    artifacts: ArtifactStore  # where the Spark steps pass Parquet to each other
    # A LazyPySparkResource (resources/spark.py): typed by its base class because dagster-pyspark
    # is the spark extra's, which the scikit-learn engine does not need installed.
    spark: dg.ConfigurableResource | None = None

    def steps(self) -> CandidateSteps:
        """The step functions of the configured engine."""
        if self.engine == "sklearn":
            from recsys_assets.candidates import steps

            return steps
        if self.spark is None:
            raise ValueError("The spark candidate engine needs a Spark resource: CandidateEngine(spark=resources.spark.spark_resource()).")
        from recsys_assets.candidates.spark import SparkSteps
        from recsys_assets.candidates.spark_io import SparkTables

        return SparkSteps(SparkTables(self.spark.spark_session, self.artifacts, settings.dbt_target()))


def candidate_engine_resource(artifacts: ArtifactStore) -> CandidateEngine:
    """The engine RECSYS_CANDIDATE_ENGINE names; the Spark one with the session RECSYS_SPARK_* describe."""
    engine = settings.candidate_engine()
    if engine == "sklearn":
        return CandidateEngine(engine=engine, artifacts=artifacts)
    from resources.spark import spark_resource

    return CandidateEngine(engine=engine, artifacts=artifacts, spark=spark_resource())

"""The evaluation layer's warehouse tables.

``evaluation.recommendations`` holds every recommender's test-period top lists (baselines
and the LLM alike); each writer replaces only its own rows, in one transaction, so the
evaluation never sees a half-written recommender. ``marts.recommendation_metrics`` keeps
one row per (model, metric, k) per evaluation run: ``evaluated_at`` tells the runs apart
and the history shows how a model moved. ``evaluation.experiment_results`` does the same
for the experiments job's (target strategy, chains) variants.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from resources.warehouse import transaction

RECOMMENDATIONS = "evaluation.recommendations"
METRICS = "marts.recommendation_metrics"
EXPERIMENTS = "evaluation.experiment_results"
# The LLM's recommender names in RECOMMENDATIONS: its served ranking, and its generated items alone in the
# chains' agreement order (what the likelihood ranking adds).
LLM = "llm"
LLM_CHAINS = "llm_chains"

_DDL = {
    RECOMMENDATIONS: "recommender VARCHAR, user_id BIGINT, rank INTEGER, item_id BIGINT, score DOUBLE",
    METRICS: "model VARCHAR, metric VARCHAR, k INTEGER, value DOUBLE, evaluated_at TIMESTAMP",
    EXPERIMENTS: "run_id VARCHAR, strategy VARCHAR, chains INTEGER, metric VARCHAR, k INTEGER, value DOUBLE, evaluated_at TIMESTAMP",
}
_APPEND_COLUMNS = {
    METRICS: ["model", "metric", "k", "value"],
    EXPERIMENTS: ["run_id", "strategy", "chains", "metric", "k", "value"],
}


def ensure_table(conn, table: str) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_DDL[table]})")


def write_recommendations(conn, recommender: str, recommendations: pd.DataFrame) -> int:
    """Replace ``recommender``'s rows with ``user_id, rank, item_id, score``; returns the row count."""
    ensure_table(conn, RECOMMENDATIONS)
    conn.register("incoming_recommendations", recommendations[["user_id", "rank", "item_id", "score"]])
    try:
        with transaction(conn):
            conn.execute(f"DELETE FROM {RECOMMENDATIONS} WHERE recommender = ?", [recommender])
            conn.execute(f"INSERT INTO {RECOMMENDATIONS} SELECT ?, user_id, rank, item_id, score FROM incoming_recommendations", [recommender])
    finally:
        conn.unregister("incoming_recommendations")
    return len(recommendations)


def delete_recommendations(conn, recommender: str) -> None:
    ensure_table(conn, RECOMMENDATIONS)
    conn.execute(f"DELETE FROM {RECOMMENDATIONS} WHERE recommender = ?", [recommender])


def read_recommendations(conn) -> pd.DataFrame:
    ensure_table(conn, RECOMMENDATIONS)
    return conn.execute(f"SELECT recommender, user_id, rank, item_id FROM {RECOMMENDATIONS}").df()


def append_results(conn, table: str, rows: pd.DataFrame, evaluated_at: datetime) -> None:
    """Add one evaluation run's rows to ``METRICS`` or ``EXPERIMENTS``, stamped ``evaluated_at``."""
    ensure_table(conn, table)
    columns = ", ".join(_APPEND_COLUMNS[table])
    conn.register("incoming_results", rows[_APPEND_COLUMNS[table]])
    try:
        with transaction(conn):
            conn.execute(f"INSERT INTO {table} SELECT {columns}, ? FROM incoming_results", [evaluated_at])
    finally:
        conn.unregister("incoming_results")

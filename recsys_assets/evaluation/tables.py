"""The evaluation layer's warehouse tables.

``evaluation.recommendations`` holds every recommender's test-period top lists (baselines
and the LLM alike); each writer replaces only its own rows, in one transaction, so the
evaluation never sees a half-written recommender. ``marts.recommendation_metrics`` keeps
one row per (model, metric, k) per evaluation run: ``evaluated_at`` tells the runs apart
and the history shows how a model moved.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

RECOMMENDATIONS = "evaluation.recommendations"
METRICS = "marts.recommendation_metrics"

_DDL = {
    RECOMMENDATIONS: "recommender VARCHAR, user_id BIGINT, rank INTEGER, item_id BIGINT, score DOUBLE",
    METRICS: "model VARCHAR, metric VARCHAR, k INTEGER, value DOUBLE, evaluated_at TIMESTAMP",
}


def ensure_table(conn, table: str) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_DDL[table]})")


def _in_transaction(conn, statements) -> None:
    conn.begin()
    try:
        for sql, parameters in statements:
            conn.execute(sql, parameters)
        conn.commit()
    except Exception:
        conn.rollback()
        raise


def write_recommendations(conn, recommender: str, recommendations: pd.DataFrame) -> int:
    """Replace ``recommender``'s rows with ``user_id, rank, item_id, score``; returns the row count."""
    ensure_table(conn, RECOMMENDATIONS)
    conn.register("incoming_recommendations", recommendations[["user_id", "rank", "item_id", "score"]])
    try:
        _in_transaction(
            conn,
            [
                (f"DELETE FROM {RECOMMENDATIONS} WHERE recommender = ?", [recommender]),
                (f"INSERT INTO {RECOMMENDATIONS} SELECT ?, user_id, rank, item_id, score FROM incoming_recommendations", [recommender]),
            ],
        )
    finally:
        conn.unregister("incoming_recommendations")
    return len(recommendations)


def read_recommendations(conn) -> pd.DataFrame:
    ensure_table(conn, RECOMMENDATIONS)
    return conn.execute(f"SELECT recommender, user_id, rank, item_id FROM {RECOMMENDATIONS}").df()


def append_metrics(conn, metrics: pd.DataFrame, evaluated_at: datetime) -> None:
    """Add one evaluation run's ``model, metric, k, value`` rows."""
    ensure_table(conn, METRICS)
    conn.register("incoming_metrics", metrics[["model", "metric", "k", "value"]])
    try:
        _in_transaction(conn, [(f"INSERT INTO {METRICS} SELECT model, metric, k, value, ? FROM incoming_metrics", [evaluated_at])])
    finally:
        conn.unregister("incoming_metrics")

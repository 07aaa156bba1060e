"""The candidate layer's warehouse reads and writes, shared by both engines.

Every table lives in schema ``candidates`` and is replaced whole inside one transaction
(``resources.warehouse.transaction``), so a re-run is idempotent and a reader never sees a
half-written table. The scikit-learn steps write numpy arrays (``replace_table``), the Spark
steps Parquet (``load_into_warehouse``); both go through ``replace_table_from``, which casts
to the columns of tables.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from recsys_assets.candidates import compute, top_k_search
from recsys_assets.candidates.tables import INTEREST_CLUSTERS, ITEM_VECTORS, SCHEMA, USER_INTEREST_CLUSTERS, TableSpec
from recsys_assets.keys import FCT_PURCHASES_TABLE
from resources.warehouse import transaction

# ---------------------------------------------------------------- writes


def replace_table_from(conn: duckdb.DuckDBPyConnection, spec: TableSpec, source: str, parameters: list | None = None) -> None:
    """Replace ``spec``'s table with the rows of ``source`` (a FROM clause), cast to its columns, atomically."""
    select = ", ".join(f"CAST({c.name} AS {c.sql_type}) AS {c.name}" for c in spec.columns)
    with transaction(conn):
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        conn.execute(f"CREATE OR REPLACE TABLE {spec.qualified} AS SELECT {select} FROM {source}", parameters)


def replace_table(conn: duckdb.DuckDBPyConnection, spec: TableSpec, columns: dict[str, Any]) -> int:
    """Replace ``spec``'s table with ``columns`` (numpy arrays; 2-d arrays become FLOAT[]) atomically."""
    frame = pa.table({name: _arrow(values) for name, values in columns.items()})
    view = f"_candidates_{spec.name}_frame"
    conn.register(view, frame)
    try:
        replace_table_from(conn, spec, view)
    finally:
        conn.unregister(view)
    return frame.num_rows


def load_into_warehouse(conn: duckdb.DuckDBPyConnection, spec: TableSpec, path: str) -> int:
    """Replace the warehouse table of ``spec`` with the Parquet folder at ``path``, atomically."""
    replace_table_from(conn, spec, "read_parquet(?)", [f"{path}/*.parquet"])
    return scalar(conn, f"SELECT count(*) FROM {spec.qualified}")


def _arrow(values: np.ndarray) -> pa.Array:
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).ravel()), values.shape[1])
    return pa.array(values)


# ---------------------------------------------------------------- reads


def scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The one value of ``sql``, fetched to the end: DuckDB refuses other work on a connection
    whose last result was left unfinished (as fetchone leaves it)."""
    return conn.execute(sql).fetchall()[0][0]


def _query(conn: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return conn.sql(sql).to_arrow_table()


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    return table[column].to_numpy()


def _vectors(table: pa.Table) -> np.ndarray:
    vectors = table["vector"].combine_chunks()
    if table.num_rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return vectors.flatten().to_numpy().astype(np.float32).reshape(table.num_rows, -1)


def read_window_purchases(
    conn: duckdb.DuckDBPyConnection, history_days: int, end_day: date | None = None
) -> tuple[compute.Interactions, dict[str, str]]:
    """Purchases of the ``history_days`` days ending at ``end_day`` (default: the newest purchase day).

    The assets end the window the day before the validation period, so that nothing the
    evaluation holds out shapes the candidates (and, through them, the training targets).
    """
    end = end_day or scalar(conn, f"SELECT max(event_date) FROM {FCT_PURCHASES_TABLE}")
    if end is None:
        raise ValueError(f"{FCT_PURCHASES_TABLE} is empty: materialize the features layer first.")
    start = end - timedelta(days=int(history_days) - 1)
    table = _query(
        conn,
        f"""
        SELECT user_id, item_id,
               date_diff('second', ts, DATE '{end}' + INTERVAL 1 DAY) / 86400.0 AS age_days
        FROM {FCT_PURCHASES_TABLE}
        WHERE event_date BETWEEN DATE '{start}' AND DATE '{end}'
        """,
    )
    if table.num_rows == 0:
        raise ValueError(f"No purchases in {FCT_PURCHASES_TABLE} between {start} and {end}: materialize the features layer first.")
    interactions = compute.Interactions.from_events(
        _numpy(table, "user_id"), _numpy(table, "item_id"), _numpy(table, "age_days")
    )
    return interactions, {"window_start": str(start), "window_end": str(end)}


def read_vectors(conn: duckdb.DuckDBPyConnection, spec: TableSpec, extra: str = "") -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """Ids (sorted), their vectors, and the raw rows (for ``extra`` joined columns)."""
    id_column = spec.columns[0].name
    table = _query(conn, f"SELECT * FROM {spec.qualified} {extra} ORDER BY {id_column}")
    return _numpy(table, id_column), _vectors(table), table


def read_item_vectors_with_clusters(conn: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ids, vectors and interest cluster, aligned by row."""
    ids, vectors, table = read_vectors(conn, ITEM_VECTORS, f"JOIN {INTEREST_CLUSTERS.qualified} USING (item_id)")
    return ids, vectors, _numpy(table, "cluster_id").astype(np.int64)


def read_user_clusters(conn: duckdb.DuckDBPyConnection, user_ids: np.ndarray) -> top_k_search.TopK:
    """The interest clusters of every user of ``user_ids`` (sorted), as a TopK in their order."""
    table = _query(conn, f"SELECT user_id, rank, cluster_id, score FROM {USER_INTEREST_CLUSTERS.qualified}")
    rows, slots = compute.positions(user_ids, _numpy(table, "user_id")), _numpy(table, "rank") - 1
    known = rows >= 0
    width = int(slots.max()) + 1 if len(slots) else 1
    indices = np.full((len(user_ids), width), -1, dtype=np.int64)
    scores = np.full((len(user_ids), width), -np.inf, dtype=np.float32)
    indices[rows[known], slots[known]] = _numpy(table, "cluster_id")[known]
    scores[rows[known], slots[known]] = _numpy(table, "score")[known]
    return top_k_search.TopK(indices, scores)

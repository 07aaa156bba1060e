"""The candidate steps against the warehouse: read inputs, compute (compute.py), write a table.

No Dagster here: the assets (assets.py) and the benchmark (benchmarks/candidates.py) call the
same functions, so the benchmark times exactly what a materialization runs. Each step
returns a StepReport with its row count, the seconds spent reading, computing and writing,
and the statistics the asset shows as metadata.

Every table lives in schema ``candidates`` and is replaced whole inside one transaction, so
a re-run is idempotent and a reader never sees a half-written table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys_assets.candidates import compute
from resources.warehouse import transaction

SCHEMA = "candidates"
PURCHASES = "staging.fct_purchases"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    description: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


def _id(entity: str) -> Column:
    return Column(f"{entity}_id", "BIGINT", f"{entity.capitalize()} id, as in the landing data.")


def _rank(what: str) -> Column:
    return Column("rank", "INTEGER", f"1 = the most similar {what}; ranks follow descending score.")


def _vector(entity: str) -> Column:
    return Column("vector", "FLOAT[]", f"Unit-length {entity} vector: the dot product of two vectors is their cosine similarity.")


ITEM_VECTORS = TableSpec(
    "item_vectors",
    "One row per item bought in the history window: its vector, learned by truncated SVD of the "
    "degree-normalised user x item purchase matrix (items bought together point the same way).",
    (
        _id("item"),
        _vector("item"),
        Column("buyers", "INTEGER", "Distinct users who bought the item in the history window."),
    ),
)
USER_VECTORS = TableSpec(
    "user_vectors",
    "One row per user with purchases in the history window: the recency-weighted mean direction "
    "of the vectors of the items they bought, in the item vector space.",
    (
        _id("user"),
        _vector("user"),
        Column("purchases", "INTEGER", "Purchases in the history window behind the vector."),
    ),
)
INTEREST_CLUSTERS = TableSpec(
    "interest_clusters",
    "One row per item with a vector: its interest cluster (k-means of the item vectors).",
    (
        _id("item"),
        Column("cluster_id", "INTEGER", "Interest cluster, 0..clusters-1."),
        Column("centroid_similarity", "FLOAT", "Cosine between the item vector and its cluster's mean direction."),
        Column("cluster_size", "INTEGER", "Items in the cluster."),
    ),
)
USER_INTEREST_CLUSTERS = TableSpec(
    "user_interest_clusters",
    "The interest clusters nearest to every user vector, nearest first.",
    (
        _id("user"),
        _rank("cluster"),
        Column("cluster_id", "INTEGER", "Interest cluster (candidates.interest_clusters)."),
        Column("score", "FLOAT", "Cosine between the user vector and the cluster's mean direction, in [-1, 1]."),
    ),
)
USER_CLUSTER_CANDIDATES = TableSpec(
    "user_cluster_candidates",
    "Candidate items per user: the items of the user's nearest interest clusters, ranked by cosine "
    "to the user vector, without items the user bought in the history window.",
    (
        _id("user"),
        _rank("candidate"),
        _id("item"),
        Column("score", "FLOAT", "Cosine between the user vector and the item vector, in [-1, 1]."),
        Column("cluster_id", "INTEGER", "The interest cluster the candidate came from."),
    ),
)
SIMILAR_ITEMS = TableSpec(
    "similar_items",
    "Top-K most similar other items per item, by cosine of the item vectors.",
    (
        _id("item"),
        _rank("item"),
        Column("neighbour_item_id", "BIGINT", "The similar item."),
        Column("score", "FLOAT", "Cosine similarity of the two item vectors, in [-1, 1]."),
    ),
)
SIMILAR_USERS = TableSpec(
    "similar_users",
    "Top-K most similar other users per user, by cosine of the user vectors.",
    (
        _id("user"),
        _rank("user"),
        Column("neighbour_user_id", "BIGINT", "The similar user."),
        Column("score", "FLOAT", "Cosine similarity of the two user vectors, in [-1, 1]."),
    ),
)
TABLES = (ITEM_VECTORS, USER_VECTORS, INTEREST_CLUSTERS, USER_INTEREST_CLUSTERS, USER_CLUSTER_CANDIDATES, SIMILAR_ITEMS, SIMILAR_USERS)


@dataclass
class StepReport:
    table: TableSpec
    rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[phase] = round(time.perf_counter() - started, 3)


# ---------------------------------------------------------------- warehouse input and output


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


def _arrow(values: np.ndarray) -> pa.Array:
    if values.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(np.float32).ravel()), values.shape[1])
    return pa.array(values)


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
    end = end_day or conn.execute(f"SELECT max(event_date) FROM {PURCHASES}").fetchall()[0][0]
    if end is None:
        raise ValueError(f"{PURCHASES} is empty: materialize the features layer first.")
    start = end - timedelta(days=int(history_days) - 1)
    table = _query(
        conn,
        f"""
        SELECT user_id, item_id,
               date_diff('second', ts, DATE '{end}' + INTERVAL 1 DAY) / 86400.0 AS age_days
        FROM {PURCHASES}
        WHERE event_date BETWEEN DATE '{start}' AND DATE '{end}'
        """,
    )
    if table.num_rows == 0:
        raise ValueError(f"No purchases in {PURCHASES} between {start} and {end}: materialize the features layer first.")
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


def _pair_matrix(left_ids: np.ndarray, right_ids: np.ndarray, left: np.ndarray, right: np.ndarray) -> sp.csr_matrix:
    """Binary matrix over the (left, right) id pairs, rows/columns in the order of the id arrays."""
    rows, columns = compute.positions(left_ids, left), compute.positions(right_ids, right)
    known = (rows >= 0) & (columns >= 0)
    matrix = sp.csr_matrix(
        (np.ones(known.sum(), dtype=np.int8), (rows[known], columns[known])), shape=(len(left_ids), len(right_ids))
    )
    matrix.sum_duplicates()
    return matrix


# ---------------------------------------------------------------- steps


def item_vectors(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, dimensions: int, seed: int, end_day: date | None = None
) -> StepReport:
    report = StepReport(ITEM_VECTORS)
    with report.timed("read"):
        interactions, window = read_window_purchases(conn, history_days, end_day)
    with report.timed("compute"):
        purchased = (interactions.matrix() > 0).astype(np.float32)
        vectors, explained = compute.learn_item_vectors(purchased, dimensions, seed)
    with report.timed("write"):
        buyers = np.asarray(purchased.sum(axis=0)).ravel().astype(np.int32)
        report.rows = replace_table(conn, ITEM_VECTORS, {"item_id": interactions.item_ids, "vector": vectors, "buyers": buyers})
    n_users, n_items = interactions.shape
    report.stats = {
        **window,
        "users": n_users,
        "items": n_items,
        "purchases": len(interactions.users),
        "matrix_nonzeros": purchased.nnz,
        "matrix_density": float(purchased.nnz / (n_users * n_items)),
        "dimensions": vectors.shape[1],
        "explained_variance_ratio": round(explained, 4),
    }
    return report


def user_vectors(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, recency_half_life_days: float, end_day: date | None = None
) -> StepReport:
    report = StepReport(USER_VECTORS)
    with report.timed("read"):
        interactions, window = read_window_purchases(conn, history_days, end_day)
        item_ids, item_vectors, _ = read_vectors(conn, ITEM_VECTORS)
    with report.timed("compute"):
        # Items are looked up by id: the item vectors may come from another window.
        item_rows = compute.positions(item_ids, interactions.item_ids[interactions.items])
        known = item_rows >= 0
        weights = sp.csr_matrix(
            (compute.recency_weights(interactions.age_days[known], recency_half_life_days), (interactions.users[known], item_rows[known])),
            shape=(len(interactions.user_ids), len(item_ids)),
        )
        vectors = compute.user_vectors(weights, item_vectors)
        has_vector = np.linalg.norm(vectors, axis=1) > 0
        purchases = np.bincount(interactions.users[known], minlength=len(interactions.user_ids)).astype(np.int32)
    with report.timed("write"):
        report.rows = replace_table(
            conn,
            USER_VECTORS,
            {"user_id": interactions.user_ids[has_vector], "vector": vectors[has_vector], "purchases": purchases[has_vector]},
        )
    report.stats = {
        **window,
        "users": report.rows,
        "purchases_used": int(known.sum()),
        "purchases_of_items_without_vector": int((~known).sum()),
        "recency_half_life_days": recency_half_life_days,
    }
    return report


def interest_clusters(conn: duckdb.DuckDBPyConnection, *, clusters: int, seed: int) -> StepReport:
    report = StepReport(INTEREST_CLUSTERS)
    with report.timed("read"):
        item_ids, vectors, _ = read_vectors(conn, ITEM_VECTORS)
    with report.timed("compute"):
        labels = compute.cluster_items(vectors, clusters, seed)
        centroids = compute.cluster_centroids(vectors, labels)
        sizes = np.bincount(labels)
        similarity = np.einsum("ij,ij->i", vectors, centroids[labels])
    with report.timed("write"):
        report.rows = replace_table(
            conn,
            INTEREST_CLUSTERS,
            {"item_id": item_ids, "cluster_id": labels, "centroid_similarity": similarity, "cluster_size": sizes[labels]},
        )
    report.stats = {"clusters": len(sizes), "cluster_sizes": sizes, "mean_centroid_similarity": round(float(similarity.mean()), 4)}
    return report


def user_interest_clusters(conn: duckdb.DuckDBPyConnection, *, clusters_per_user: int) -> StepReport:
    report = StepReport(USER_INTEREST_CLUSTERS)
    with report.timed("read"):
        user_ids, users, _ = read_vectors(conn, USER_VECTORS)
        _, items, labels = read_item_vectors_with_clusters(conn)
    with report.timed("compute"):
        nearest = compute.nearest_clusters(users, compute.cluster_centroids(items, labels), clusters_per_user)
        user, rank, cluster, score = nearest.as_rows()
    with report.timed("write"):
        report.rows = replace_table(
            conn, USER_INTEREST_CLUSTERS, {"user_id": user_ids[user], "rank": rank, "cluster_id": cluster, "score": score}
        )
    report.stats = {"users": len(user_ids), "clusters_per_user": clusters_per_user, "mean_top_cluster_score": _mean_first(nearest)}
    return report


def user_cluster_candidates(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, candidates_per_user: int, end_day: date | None = None
) -> StepReport:
    report = StepReport(USER_CLUSTER_CANDIDATES)
    with report.timed("read"):
        user_ids, users, _ = read_vectors(conn, USER_VECTORS)
        item_ids, items, labels = read_item_vectors_with_clusters(conn)
        user_clusters = _read_user_clusters(conn, user_ids)
        interactions, window = read_window_purchases(conn, history_days, end_day)
    with report.timed("compute"):
        purchased = _pair_matrix(
            user_ids, item_ids, interactions.user_ids[interactions.users], interactions.item_ids[interactions.items]
        )
        candidates = compute.cluster_candidates(users, user_clusters, items, labels, purchased, candidates_per_user)
        user, rank, item, score = candidates.as_rows()
    with report.timed("write"):
        report.rows = replace_table(
            conn,
            USER_CLUSTER_CANDIDATES,
            {"user_id": user_ids[user], "rank": rank, "item_id": item_ids[item], "score": score, "cluster_id": labels[item]},
        )
    per_user = candidates.found.sum(axis=1)
    report.stats = {
        **window,
        "users": len(user_ids),
        "users_without_candidates": int((per_user == 0).sum()),
        "mean_candidates_per_user": round(float(per_user.mean()), 2),
        "share_of_users_with_full_list": round(float((per_user == candidates_per_user).mean()), 4),
    }
    return report


def _read_user_clusters(conn: duckdb.DuckDBPyConnection, user_ids: np.ndarray) -> compute.TopK:
    table = _query(conn, f"SELECT user_id, rank, cluster_id, score FROM {USER_INTEREST_CLUSTERS.qualified}")
    rows, slots = compute.positions(user_ids, _numpy(table, "user_id")), _numpy(table, "rank") - 1
    known = rows >= 0
    width = int(slots.max()) + 1 if len(slots) else 1
    indices = np.full((len(user_ids), width), -1, dtype=np.int64)
    scores = np.full((len(user_ids), width), -np.inf, dtype=np.float32)
    indices[rows[known], slots[known]] = _numpy(table, "cluster_id")[known]
    scores[rows[known], slots[known]] = _numpy(table, "score")[known]
    return compute.TopK(indices, scores)


def similar_items(conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
    return _similar(conn, ITEM_VECTORS, SIMILAR_ITEMS, **search)


def similar_users(conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
    return _similar(conn, USER_VECTORS, SIMILAR_USERS, **search)


def _similar(
    conn: duckdb.DuckDBPyConnection,
    source: TableSpec,
    target: TableSpec,
    *,
    neighbours: int,
    search_list_size: int,
    search_probes: int,
    recall_sample: int,
    seed: int,
) -> StepReport:
    """Top-K neighbours of every row of ``source``: exact up to one list, else inverted-file search."""
    report = StepReport(target)
    id_column, neighbour_column = target.columns[0].name, target.columns[2].name
    with report.timed("read"):
        ids, vectors, _ = read_vectors(conn, source)
    with report.timed("index"):
        lists = compute.search_lists(vectors, search_list_size, search_probes, seed)
    with report.timed("compute"):
        found = compute.similar(vectors, neighbours, lists)
        row, rank, neighbour, score = found.as_rows()
    with report.timed("write"):
        report.rows = replace_table(
            conn, target, {id_column: ids[row], "rank": rank, neighbour_column: ids[neighbour], "score": score}
        )
    report.stats = {
        "rows_searched": len(ids),
        "neighbours": neighbours,
        "search": "exact" if lists.count == 1 else "inverted file (k-means lists)",
        "search_lists": lists.count,
        "search_probes": lists.probes.shape[1],
        "largest_search_list": int(lists.sizes.max()) if len(ids) else 0,
        "mean_top1_score": _mean_first(found),
    }
    if lists.count > 1:
        with report.timed("recall"):
            report.stats["recall_vs_exact"] = round(measure_recall(vectors, found, neighbours, recall_sample, seed), 4)
            report.stats["recall_sample"] = min(recall_sample, len(ids))
    return report


def measure_recall(vectors: np.ndarray, found: compute.TopK, k: int, sample: int, seed: int) -> float:
    """Recall@k of ``found`` against exact search, on a random sample of rows."""
    rows = np.random.default_rng(seed).choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    exact = compute.exact_similar(vectors, rows, k)
    return compute.recall(compute.TopK(found.indices[rows], found.scores[rows]), exact)


def _mean_first(found: compute.TopK) -> float:
    first = found.scores[:, 0] if found.scores.size else np.zeros(0)
    first = first[np.isfinite(first)]
    return round(float(first.mean()), 4) if len(first) else 0.0

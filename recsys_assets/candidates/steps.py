"""The scikit-learn candidate engine: each step reads the warehouse, computes, writes a table.

The computing is compute.py's (vectors, clusters) and top_k_search.py's (neighbours,
candidates), the reading and writing warehouse_io.py's. No Dagster here: the assets (through
resources/candidate_engine.py) and the benchmark (benchmarks/candidates.py) call the same
functions, so the benchmark times exactly what a materialization runs. Each step returns a
StepReport (report.py) with its row count, the seconds spent reading, computing and writing,
and the statistics the asset shows as metadata. The Spark engine (spark.py) has the same
steps with the same signatures and tables.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

from recsys_assets.candidates import compute, top_k_search
from recsys_assets.candidates.report import StepReport
from recsys_assets.candidates.tables import (
    INTEREST_CLUSTERS,
    ITEM_VECTORS,
    SIMILAR_ITEMS,
    SIMILAR_USERS,
    USER_CLUSTER_CANDIDATES,
    USER_INTEREST_CLUSTERS,
    USER_VECTORS,
    TableSpec,
)
from recsys_assets.candidates.warehouse_io import (
    read_item_vectors_with_clusters,
    read_user_clusters,
    read_vectors,
    read_window_purchases,
    replace_table,
)


def _pair_matrix(left_ids: np.ndarray, right_ids: np.ndarray, left: np.ndarray, right: np.ndarray) -> sp.csr_matrix:
    """Binary matrix over the (left, right) id pairs, rows/columns in the order of the id arrays."""
    rows, columns = compute.positions(left_ids, left), compute.positions(right_ids, right)
    known = (rows >= 0) & (columns >= 0)
    matrix = sp.csr_matrix(
        (np.ones(known.sum(), dtype=np.int8), (rows[known], columns[known])), shape=(len(left_ids), len(right_ids))
    )
    matrix.sum_duplicates()
    return matrix


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
        nearest = top_k_search.nearest_clusters(users, compute.cluster_centroids(items, labels), clusters_per_user)
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
        user_clusters = read_user_clusters(conn, user_ids)
        interactions, window = read_window_purchases(conn, history_days, end_day)
    with report.timed("compute"):
        purchased = _pair_matrix(
            user_ids, item_ids, interactions.user_ids[interactions.users], interactions.item_ids[interactions.items]
        )
        candidates = top_k_search.cluster_candidates(users, user_clusters, items, labels, purchased, candidates_per_user)
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
        lists = top_k_search.search_lists(vectors, search_list_size, search_probes, seed)
    with report.timed("compute"):
        found = top_k_search.similar(vectors, neighbours, lists)
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


def measure_recall(vectors: np.ndarray, found: top_k_search.TopK, k: int, sample: int, seed: int) -> float:
    """Recall@k of ``found`` against exact search, on a random sample of rows."""
    rows = np.random.default_rng(seed).choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    exact = top_k_search.exact_similar(vectors, rows, k)
    return top_k_search.recall(top_k_search.TopK(found.indices[rows], found.scores[rows]), exact)


def _mean_first(found: top_k_search.TopK) -> float:
    first = found.scores[:, 0] if found.scores.size else np.zeros(0)
    first = first[np.isfinite(first)]
    return round(float(first.mean()), 4) if len(first) else 0.0

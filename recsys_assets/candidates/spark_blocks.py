"""The numpy side of the Spark engine (spark_frames.py): the functions Spark's Python workers run.

Each returns a function for ``mapInPandas`` or a cogrouped ``applyInPandas`` that scores one
batch or one block of rows with top_k_search.py, so both engines score, exclude and rank alike.

Kept apart from the Spark modules on purpose: a worker imports the module its functions come
from, and this one needs only numpy, pandas, scipy and top_k_search.py (about a second), where
spark.py would pull in DuckDB, the warehouse I/O and the resources in every worker process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.candidates import compute, top_k_search

# What every search returns before ranking: (query, base row, cosine, block it was found in).
FOUND_SCHEMA = "query_id long, base_id long, score float, block int"


def found(query_ids: np.ndarray, base_ids: np.ndarray, scores: np.ndarray, block: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": np.asarray(query_ids, dtype=np.int64),
            "base_id": np.asarray(base_ids, dtype=np.int64),
            "score": np.asarray(scores, dtype=np.float32),
            "block": np.full(len(query_ids), block, dtype=np.int32),
        }
    )


def to_matrix(vectors: pd.Series) -> np.ndarray:
    """A column of equal-length arrays as a (rows, dimensions) float32 matrix."""
    return np.stack(vectors.to_numpy()).astype(np.float32) if len(vectors) else np.zeros((0, 0), dtype=np.float32)


def exclusion_matrix(excluded: pd.Series, base_ids: np.ndarray) -> sp.csr_matrix:
    """queries x base rows, 1 where a query's ``excluded`` list holds the base id.

    ``base_ids`` must be sorted; ids absent from them are ignored, a missing list excludes nothing.
    """
    lists = [np.zeros(0, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64) for ids in excluded]
    columns = compute.positions(base_ids, np.concatenate(lists) if lists else np.zeros(0, dtype=np.int64))
    rows = np.repeat(np.arange(len(lists)), [len(ids) for ids in lists])
    inside = columns >= 0
    return sp.csr_matrix((np.ones(inside.sum(), dtype=np.int8), (rows[inside], columns[inside])), shape=(len(lists), len(base_ids)))


def top_k(queries: np.ndarray, base: np.ndarray, k: int, excluded: sp.csr_matrix) -> top_k_search.TopK:
    """Exact top-k of base rows per query (one block) with top_k_search.blocked_top_k."""
    one_block = np.zeros(len(queries), dtype=np.int64), np.zeros(len(base), dtype=np.int64)
    return top_k_search.blocked_top_k(queries, one_block[0], base, one_block[1], k, excluded)


def block_search(k: int) -> Callable[[tuple, pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    """For a cogroup by block: the top-k base rows of the block per query probing it.

    Queries: (query_id, vector, excluded); base rows: (base_id, vector).
    """

    def search(key: tuple, probing: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
        if probing.empty or members.empty:
            return found([], [], [], 0)
        members = members.sort_values("base_id")
        base_ids = members["base_id"].to_numpy()
        best = top_k(to_matrix(probing["vector"]), to_matrix(members["vector"]), k, exclusion_matrix(probing["excluded"], base_ids))
        query, _, neighbour, score = best.as_rows()
        return found(probing["query_id"].to_numpy()[query], base_ids[neighbour], score, int(key[0]))

    return search


def sample_search(sample_ids: np.ndarray, sample_vectors: np.ndarray, k: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """For mapInPandas over (id, vector) rows: the exact top-k of every sampled row within each batch."""

    def search(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        itself = pd.Series([[i] for i in sample_ids], dtype=object)
        for batch in batches:
            batch = batch.sort_values("id")
            batch_ids = batch["id"].to_numpy()
            best = top_k(sample_vectors, to_matrix(batch["vector"]), k, exclusion_matrix(itself, batch_ids))
            query, _, neighbour, score = best.as_rows()
            yield found(sample_ids[query], batch_ids[neighbour], score, 0)

    return search


def centroid_search(key: str, centroids: np.ndarray, top: int) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """For mapInPandas over (key, vector) rows: the ``top`` nearest centroids of every row."""

    def search(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            row, rank, centroid, score = top_k_search.nearest_clusters(to_matrix(batch["vector"]), centroids, top).as_rows()
            yield pd.DataFrame(
                {key: batch[key].to_numpy()[row], "rank": rank, "centroid": centroid.astype(np.int32), "score": score}
            )

    return search

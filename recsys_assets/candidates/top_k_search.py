"""Top-k search by cosine for the candidate layer: pure numpy / scipy, no Dagster, no warehouse.

Neighbours and candidates are a blocked top-k search (``blocked_top_k``): queries join the
blocks they probe, a block is scored by dot product, the top k per query are kept. That is
the join / score / window function the Spark engine runs per block (spark_blocks.py calls the
same function on each block), so both engines rank alike. Blocks are interest clusters for
the cluster candidates, k-means search lists (an inverted file) for similar items and users;
with one block the search is exact, and ``recall`` measures the approximate search against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_assets.candidates.compute import kmeans, normalise_rows

# Largest score block (queries x base rows) held in memory at once: 8M float32 = 32 MB,
# big enough for BLAS to run at full speed, small enough to stay in cache-friendly chunks.
BLOCK_ELEMENTS = 8_000_000
# k-means for the search lists is fitted on a sample: this many rows per list is plenty to
# place the centroids, and keeps the fit cheap at millions of rows.
SEARCH_FIT_ROWS_PER_LIST = 64


@dataclass(frozen=True)
class TopK:
    """Per query row, up to k results best first; missing slots hold index -1 and score -inf."""

    indices: np.ndarray  # (queries, k) int64
    scores: np.ndarray  # (queries, k) float32

    @property
    def found(self) -> np.ndarray:
        return self.indices >= 0

    def as_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Long format (query, rank 1.., index, score) without the empty slots."""
        query, slot = np.nonzero(self.found)
        return query, (slot + 1).astype(np.int32), self.indices[query, slot], self.scores[query, slot]


def blocked_top_k(
    queries: np.ndarray,
    query_blocks: np.ndarray,
    base: np.ndarray,
    base_blocks: np.ndarray,
    k: int,
    excluded: sp.csr_matrix | None = None,
) -> TopK:
    """Top-k base rows by dot product per query, searching only the blocks each query probes.

    ``query_blocks`` (queries x probes) lists the blocks a query searches; ``base_blocks``
    gives the one block of every base row. ``excluded`` (queries x base, non-zero = skip)
    removes pairs such as a row and itself or a user and what they already bought. With a
    single block this is exact search.

    scikit-learn's NearestNeighbors cannot exclude arbitrary pairs, so the block scores are
    a plain matrix product with a top-k selection, chunked to bound memory.
    """
    query_blocks = np.asarray(query_blocks).reshape(len(queries), -1)
    probes = query_blocks.shape[1]
    indices = np.full((len(queries), probes, k), -1, dtype=np.int64)
    scores = np.full((len(queries), probes, k), -np.inf, dtype=np.float32)
    excluded = excluded.tocsr() if excluded is not None else None
    base_members = _group_by_block(base_blocks)
    query_members = _group_by_block(query_blocks.ravel())
    local_position = np.full(len(base), -1, dtype=np.int64)
    for block in np.unique(query_blocks[query_blocks >= 0]):  # -1: fewer blocks exist than probes
        members = base_members(block)
        if len(members) == 0:
            continue
        local_position[members] = np.arange(len(members))
        block_base = base[members].T
        probing, probe = np.divmod(query_members(block), probes)
        chunk = max(1, BLOCK_ELEMENTS // len(members))
        for start in range(0, len(probing), chunk):
            rows = probing[start : start + chunk]
            block_scores = queries[rows] @ block_base
            if excluded is not None:
                _mask_excluded(block_scores, excluded[rows], local_position)
            best, best_scores = _select_top(block_scores, k)
            indices[rows, probe[start : start + chunk], : best.shape[1]] = np.where(np.isfinite(best_scores), members[best], -1)
            scores[rows, probe[start : start + chunk], : best.shape[1]] = best_scores
        local_position[members] = -1
    return _merge(indices.reshape(len(queries), -1), scores.reshape(len(queries), -1), k)


def _group_by_block(blocks: np.ndarray):
    """A lookup from block id to the positions holding it, built with one sort."""
    order = np.argsort(blocks, kind="stable")
    starts = np.searchsorted(blocks[order], np.arange(max(int(blocks.max(initial=0)), 0) + 2))
    return lambda block: order[starts[block] : starts[block + 1]]


def _mask_excluded(block_scores: np.ndarray, excluded_rows: sp.csr_matrix, local_position: np.ndarray) -> None:
    """Set the score of excluded pairs that fall inside the current block to -inf."""
    row = np.repeat(np.arange(excluded_rows.shape[0]), np.diff(excluded_rows.indptr))
    column = local_position[excluded_rows.indices]
    inside = column >= 0
    block_scores[row[inside], column[inside]] = -np.inf


def _select_top(block_scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of the k best entries per row, best first."""
    if block_scores.shape[1] > k:
        top = np.argpartition(-block_scores, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(block_scores.shape[1]), block_scores.shape)
    top_scores = np.take_along_axis(block_scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


def _merge(indices: np.ndarray, scores: np.ndarray, k: int) -> TopK:
    """Best k of the candidates gathered from all probed blocks, per query."""
    merged_indices = np.full((len(indices), k), -1, dtype=np.int64)
    merged_scores = np.full((len(indices), k), -np.inf, dtype=np.float32)
    chunk = max(1, BLOCK_ELEMENTS // max(1, indices.shape[1]))
    for start in range(0, len(indices), chunk):
        rows = slice(start, start + chunk)
        best, best_scores = _select_top(scores[rows], k)
        width = best.shape[1]
        merged_indices[rows, :width] = np.where(np.isfinite(best_scores), np.take_along_axis(indices[rows], best, axis=1), -1)
        merged_scores[rows, :width] = best_scores
    # Dot products of unit float32 vectors can exceed 1 by a rounding error; cosines are in [-1, 1].
    return TopK(merged_indices, np.where(merged_indices >= 0, np.clip(merged_scores, -1.0, 1.0), -np.inf).astype(np.float32))


def nearest_clusters(vectors: np.ndarray, centroids: np.ndarray, top: int) -> TopK:
    """The ``top`` most similar centroids of every vector (exact: there are few centroids)."""
    return blocked_top_k(vectors, np.zeros(len(vectors), dtype=np.int64), centroids, np.zeros(len(centroids), dtype=np.int64), top)


def cluster_candidates(
    user_vectors: np.ndarray, user_clusters: TopK, item_vectors: np.ndarray, item_clusters: np.ndarray, purchased: sp.csr_matrix, top_n: int
) -> TopK:
    """User vector -> nearest interest clusters -> their items -> the top_n by cosine per user.

    Items the user already bought in the window are left out: candidates are for discovery,
    the user's own history is a separate source downstream.
    """
    return blocked_top_k(user_vectors, user_clusters.indices, item_vectors, item_clusters, top_n, excluded=purchased)


@dataclass(frozen=True)
class SearchLists:
    """An inverted-file index: each row lives in one list; a query searches its nearest lists."""

    assignment: np.ndarray  # (rows,) the list of every row
    probes: np.ndarray  # (rows, probes) lists searched for every row, nearest first

    @property
    def count(self) -> int:
        return int(self.assignment.max()) + 1

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignment)


def search_lists(vectors: np.ndarray, list_size: int, probes: int, seed: int) -> SearchLists:
    """Partition rows into about len/list_size lists by k-means; one list means exact search.

    A row's own list is its nearest centroid, so it is always its first probe.
    """
    lists = math.ceil(len(vectors) / list_size)
    if lists <= 1:
        zeros = np.zeros(len(vectors), dtype=np.int64)
        return SearchLists(zeros, zeros[:, None])
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), lists * SEARCH_FIT_ROWS_PER_LIST), replace=False)]
    # One k-means restart: the lists only need to be compact, not the best clustering.
    centroids = normalise_rows(kmeans(sample, lists, seed, restarts=1).cluster_centers_)
    nearest = nearest_clusters(vectors, centroids, min(probes, lists)).indices
    return SearchLists(nearest[:, 0], nearest)


def similar(vectors: np.ndarray, k: int, lists: SearchLists) -> TopK:
    """Top-k most similar other rows of every row, searching the lists it probes."""
    itself = sp.identity(len(vectors), dtype=np.int8, format="csr")
    return blocked_top_k(vectors, lists.probes, vectors, lists.assignment, k, excluded=itself)


def exact_similar(vectors: np.ndarray, rows: np.ndarray, k: int) -> TopK:
    """Exact top-k most similar other rows for the given rows (the reference for recall)."""
    itself = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (np.arange(len(rows)), rows)), shape=(len(rows), len(vectors)))
    return blocked_top_k(vectors[rows], np.zeros(len(rows), dtype=np.int64), vectors, np.zeros(len(vectors), dtype=np.int64), k, excluded=itself)


def recall(approximate: TopK, exact: TopK) -> float:
    """Share of the exact neighbours that the approximate search also found."""
    hits = sum(len(np.intersect1d(a[a >= 0], e[e >= 0])) for a, e in zip(approximate.indices, exact.indices))
    wanted = int(exact.found.sum())
    return hits / wanted if wanted else 1.0

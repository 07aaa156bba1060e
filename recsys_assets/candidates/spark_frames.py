"""The DataFrame operations the Spark candidate steps (spark.py) are built from.

Unit vectors and mean directions, dense id numbering, the blocked top-k search with its
search lists, and the exact search on a sample that measures its recall. Where the work is
per block of rows (top-k inside one cluster or search list), a pandas UDF runs
top_k_search.py's engine-neutral numpy functions on the block (spark_blocks.py), so both
engines score, exclude and rank candidates the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_assets.candidates import compute, top_k_search
from recsys_assets.candidates.spark_blocks import FOUND_SCHEMA, block_search, centroid_search, sample_search, to_matrix

# Rows per search list the list k-means is fitted on, as in top_k_search.search_lists.
SEARCH_FIT_ROWS_PER_LIST = top_k_search.SEARCH_FIT_ROWS_PER_LIST


# ---------------------------------------------------------------- vectors and ids


def normalised(vector: Column) -> Column:
    """Unit-length float array; an all-zero vector stays zero (as compute.normalise_rows)."""
    norm = F.sqrt(F.aggregate(vector, F.lit(0.0).cast("double"), lambda total, x: total + x * x))
    return F.when(norm > 0, F.transform(vector, lambda x: (x / norm).cast("float"))).otherwise(
        F.transform(vector, lambda x: F.lit(0.0).cast("float"))
    )


def mean_directions(frame: DataFrame, key: str, weight: str | None = None) -> DataFrame:
    """(key, vector): the normalised (weighted) mean of the ``vector`` column per ``key``."""
    vectors = array_to_vector(F.col("vector"))
    mean = Summarizer.mean(vectors, F.col(weight)) if weight else Summarizer.mean(vectors)
    means = frame.groupBy(key).agg(mean.alias("mean"))
    return means.select(key, normalised(vector_to_array("mean", dtype="float32")).alias("vector"))


def collect_vectors(frame: DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids (sorted) and vectors of a small frame, on the driver (centroids)."""
    rows = frame.orderBy(key).toPandas()
    return rows[key].to_numpy(), to_matrix(rows["vector"])


def nearest_centroids(frame: DataFrame, key: str, centroids: np.ndarray, top: int) -> DataFrame:
    """(key, rank, centroid, score): the ``top`` most similar centroids of every row, best first."""
    schema = f"{key} long, rank int, centroid int, score float"
    return frame.select(key, "vector").mapInPandas(centroid_search(key, centroids, top), schema)


def dense_index(frame: DataFrame, column: str, index: str) -> DataFrame:
    """(column, index): the distinct values of ``column`` numbered 0..n-1, cached.

    A global row_number would sort every id in one partition, and RDD.zipWithIndex runs
    Python workers: instead number rows within each partition (monotonically_increasing_id
    is partition << 33 + position) and add the row counts of the partitions before.
    """
    ids = frame.select(column).distinct().select(column, F.spark_partition_id().alias("_partition"), F.monotonically_increasing_id().alias("_row"))
    ids = ids.cache()
    counts = sorted(ids.groupBy("_partition").count().collect())
    starts = np.concatenate([[0], np.cumsum([count for _, count in counts])[:-1]]).tolist()
    start_of = F.create_map(*[F.lit(value) for (partition, _), start in zip(counts, starts) for value in (partition, start)])
    position = F.col("_row") - F.shiftleft(F.col("_partition").cast("long"), 33)
    return ids.select(column, (start_of[F.col("_partition")] + position).cast("int").alias(index)).cache()


# ---------------------------------------------------------------- blocked top-k search


def blocked_top_k(queries: DataFrame, base: DataFrame, k: int) -> DataFrame:
    """Top-k base rows per query over the blocks it probes, as top_k_search.blocked_top_k.

    ``queries``: (query_id, vector, block, excluded) with one row per probed block, where
    ``excluded`` lists base ids the query must not get (itself, what a user bought).
    ``base``: (base_id, vector, block). Returns (query_id, rank, base_id, score, block).
    The queries and base rows of a block meet in one pandas UDF call; the best k of every
    query's blocks are then merged with a window function.
    """
    found = queries.groupBy("block").cogroup(base.groupBy("block")).applyInPandas(block_search(k), FOUND_SCHEMA)
    return ranked(found, "query_id", "base_id", k)


def ranked(found: DataFrame, key: str, other: str, k: int) -> DataFrame:
    """Rank 1..k per ``key`` by descending score (ties by id, for stable output)."""
    order = Window.partitionBy(key).orderBy(F.desc("score"), other)
    return found.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)


def search_lists(rows: DataFrame, count: int, list_size: int, probes: int, seed: int) -> tuple[DataFrame, int]:
    """(id, vector, probes): the search lists every row probes, nearest first; and how many lists.

    As top_k_search.search_lists: about count/list_size lists from a k-means fitted on a sample,
    one list (exact search) when the rows fit in one; a row's own list is its first probe.
    """
    lists = math.ceil(count / list_size)
    if lists <= 1:
        return rows.withColumn("probes", F.array(F.lit(0))), 1
    fraction = min(1.0, lists * SEARCH_FIT_ROWS_PER_LIST / count)
    sample = rows.sample(fraction=fraction, seed=seed).withColumn("features", array_to_vector("vector"))
    centres = KMeans(k=lists, distanceMeasure="cosine", seed=seed, featuresCol="features").fit(sample).clusterCenters()
    centroids = compute.normalise_rows(np.stack(centres))
    nearest = nearest_centroids(rows, "id", centroids, min(probes, lists))
    probed = nearest.groupBy("id").agg(F.sort_array(F.collect_list(F.struct("rank", "centroid"))).alias("nearest"))
    return rows.join(probed, "id").select("id", "vector", F.transform("nearest", lambda n: n["centroid"]).alias("probes")), len(centroids)


def top_k_of_rows(rows: pd.DataFrame, key: str, value: str, keys: np.ndarray, k: int) -> top_k_search.TopK:
    """Long (key, rank, value) rows as a TopK over ``keys`` (scores are not needed for recall)."""
    order = np.argsort(keys)
    slot = order[compute.positions(keys[order], rows[key].to_numpy())]
    indices = np.full((len(keys), k), -1, dtype=np.int64)
    indices[slot, rows["rank"].to_numpy() - 1] = rows[value].to_numpy()
    return top_k_search.TopK(indices, np.where(indices >= 0, 0.0, -np.inf).astype(np.float32))


def exact_sample_neighbours(rows: DataFrame, k: int, sample: int, seed: int) -> tuple[np.ndarray, top_k_search.TopK]:
    """The ids of a random sample of ``rows`` (id, vector), and their exact top-k other rows.

    The sample's vectors go to every partition of ``rows`` (a broadcast in the closure); each
    partition returns its exact top-k per sampled row and a window keeps the overall top-k.
    """
    count = rows.count()
    picked = rows.sample(fraction=min(1.0, 2.0 * sample / count), seed=seed).limit(sample).toPandas()
    sample_ids, sample_vectors = picked["id"].to_numpy(), to_matrix(picked["vector"])
    truth = ranked(rows.mapInPandas(sample_search(sample_ids, sample_vectors, k), FOUND_SCHEMA), "query_id", "base_id", k).toPandas()
    return sample_ids, top_k_of_rows(truth, "query_id", "base_id", sample_ids, k)

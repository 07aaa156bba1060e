"""The candidate steps on Spark: the same step functions, tables and statistics as steps.py.

Selected with ``RECSYS_CANDIDATE_ENGINE=spark`` (assets.py): the asset keys, configs and the
warehouse tables stay the same, only the engine changes. Each step

- reads its inputs as Parquet from the artifact store (``<artifacts>/candidates/<table>``,
  written by the step before it), and the purchases from ``staging.fct_purchases``: the
  Spark table when dbt runs on Spark (``RECSYS_DBT_TARGET=spark``), else an export of the
  DuckDB warehouse table;
- computes with Spark: MLlib ALS for the item vectors, MLlib Summarizer for the user vectors
  and cluster centres, MLlib KMeans for the interest clusters and the search lists;
- writes its table as Parquet to the artifact store (the input of the next Spark step) and
  loads it into the warehouse table of steps.py (what the checks and readers use).

Where the work is per block of rows (top-k inside one cluster or search list), a pandas UDF
runs compute.py's engine-neutral numpy functions on the block (spark_blocks.py), so both
engines score, exclude and rank candidates the same way.

Item vectors differ by method (the scikit-learn path uses an SVD): implicit-feedback ALS is
what MLlib offers at cluster scale, and on the synthetic marketplace it recovers the planted
co-purchase groups and categories as well as the SVD (tests/test_spark_candidates.py).
"""

from __future__ import annotations

import math
import os
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.recommendation import ALS
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys_assets.candidates import compute
from recsys_assets.candidates.spark_blocks import FOUND_SCHEMA, block_search, centroid_search, sample_search, to_matrix
from recsys_assets.candidates.steps import (
    INTEREST_CLUSTERS,
    ITEM_VECTORS,
    PURCHASES,
    SIMILAR_ITEMS,
    SIMILAR_USERS,
    USER_CLUSTER_CANDIDATES,
    USER_INTEREST_CLUSTERS,
    USER_VECTORS,
    StepReport,
    replace_table_from,
    TableSpec,
)
from resources.artifacts import ArtifactStore
from resources.spark import spark_resource

# Implicit ALS, tuned on the synthetic marketplace (3k users): confidence 1 + 10 * purchases
# and a strong regularisation match the degree-normalised SVD on same-group and
# same-category neighbours; a low alpha or weak regularisation favours popular items.
ALS_ALPHA = 10.0
ALS_REGULARISATION = 1.0
ALS_ITERATIONS = 10
# Rows per search list the list k-means is fitted on, as in compute.search_lists.
SEARCH_FIT_ROWS_PER_LIST = compute.SEARCH_FIT_ROWS_PER_LIST


def session() -> SparkSession:
    """The engine's SparkSession, configured from the environment when a step first runs."""
    return spark_resource().spark_session


# ---------------------------------------------------------------- artifact store and warehouse


def artifact_path(spec: TableSpec) -> str:
    return str(ArtifactStore().path("candidates", spec.name))


def read_table(spark: SparkSession, spec: TableSpec) -> DataFrame:
    path = artifact_path(spec)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path} is missing: materialize candidates/{spec.name} with RECSYS_CANDIDATE_ENGINE=spark first "
            "(the Spark steps read each other's Parquet, not the warehouse)."
        )
    return spark.read.parquet(path)


def write_table(frame: DataFrame, spec: TableSpec) -> str:
    """Write ``frame`` as the Parquet of ``spec`` (columns in contract order); returns the path."""
    path = artifact_path(spec)
    frame.select(*[c.name for c in spec.columns]).write.mode("overwrite").parquet(path)
    return path


def load_into_warehouse(conn: duckdb.DuckDBPyConnection, spec: TableSpec, path: str) -> int:
    """Replace the warehouse table of ``spec`` with the Parquet at ``path``, atomically."""
    replace_table_from(conn, spec, "read_parquet(?)", [f"{path}/*.parquet"])
    return scalar(conn, f"SELECT count(*) FROM {spec.qualified}")


def scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The one value of ``sql``, fetched to the end: DuckDB refuses other work on a connection
    whose last result was left unfinished (as fetchone leaves it)."""
    return conn.execute(sql).fetchall()[0][0]


def purchases_source(spark: SparkSession, conn: duckdb.DuckDBPyConnection) -> DataFrame:
    """staging.fct_purchases: the Spark table when dbt builds on Spark, else the warehouse's, exported."""
    if os.environ.get("RECSYS_DBT_TARGET") == "spark":
        return spark.table(PURCHASES)
    path = str(ArtifactStore().path("candidates", "_input", "fct_purchases.parquet"))
    conn.execute(f"COPY (SELECT event_date, user_id, item_id, ts FROM {PURCHASES}) TO '{path}' (FORMAT parquet)").fetchall()
    return spark.read.parquet(path)


def window_purchases(
    spark: SparkSession, conn: duckdb.DuckDBPyConnection, history_days: int, end_day: date | None = None
) -> tuple[DataFrame, dict[str, str]]:
    """(user_id, item_id, age_days) of the ``history_days`` days up to ``end_day``, as steps.read_window_purchases."""
    source = purchases_source(spark, conn)
    end = end_day or source.agg(F.max("event_date")).first()[0]
    if end is None:
        raise ValueError(f"{PURCHASES} is empty: materialize the features layer first.")
    window_end = F.lit(f"{end + timedelta(days=1)} 00:00:00").cast("timestamp")
    seconds = F.unix_micros(window_end) - F.unix_micros(F.col("ts").cast("timestamp"))
    in_window = (F.col("event_date") > F.lit(end - timedelta(days=history_days))) & (F.col("event_date") <= F.lit(end))
    frame = source.where(in_window).select(
        F.col("user_id").cast("long"), F.col("item_id").cast("long"), (seconds / 86_400e6).alias("age_days")
    )
    return frame, {"window_start": str(end - timedelta(days=history_days - 1)), "window_end": str(end)}


# ---------------------------------------------------------------- vector helpers


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


# ---------------------------------------------------------------- blocked top-k search


def blocked_top_k(queries: DataFrame, base: DataFrame, k: int) -> DataFrame:
    """Top-k base rows per query over the blocks it probes, as compute.blocked_top_k.

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


# ---------------------------------------------------------------- steps


def item_vectors(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, dimensions: int, seed: int, end_day: date | None = None
) -> StepReport:
    spark, report = session(), StepReport(ITEM_VECTORS)
    with report.timed("read"):
        purchases, window = window_purchases(spark, conn, history_days, end_day)
        # ALS wants int indices; the ids are opaque int64: number them densely.
        bought = purchases.select("user_id", "item_id").distinct().cache()
        users, items = dense_index(bought, "user_id", "user_index"), dense_index(bought, "item_id", "item_index")
        ratings = bought.join(users, "user_id").join(items, "item_id").select("user_index", "item_index", F.lit(1.0).alias("rating"))
    with report.timed("compute"):
        als = ALS(
            rank=dimensions,
            implicitPrefs=True,
            alpha=ALS_ALPHA,
            regParam=ALS_REGULARISATION,
            maxIter=ALS_ITERATIONS,
            userCol="user_index",
            itemCol="item_index",
            ratingCol="rating",
            seed=seed,
            # One block per core: MLlib's default of 10 makes tiny tasks on a small cluster.
            numUserBlocks=spark.sparkContext.defaultParallelism,
            numItemBlocks=spark.sparkContext.defaultParallelism,
        )
        factors = als.fit(ratings).itemFactors.select(F.col("id").alias("item_index"), normalised(F.col("features")).alias("vector"))
        # ALS's regularisation can leave a rarely bought item an all-zero factor: it has no
        # direction to cluster or compare (MLlib's cosine k-means refuses it; found at 1M users).
        factors = factors.where(F.exists("vector", lambda x: x != 0))
        buyers = bought.groupBy("item_id").agg(F.count("*").cast("int").alias("buyers"))
        path = write_table(factors.join(items, "item_index").join(buyers, "item_id"), ITEM_VECTORS)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, ITEM_VECTORS, path)
    n_users, n_items, nonzeros = users.count(), items.count(), bought.count()
    for cached in (bought, users, items):
        cached.unpersist()
    report.stats = {
        **window,
        "users": n_users,
        "items": n_items,
        "items_without_direction": n_items - report.rows,
        "purchases": purchases.count(),
        "matrix_nonzeros": nonzeros,
        "matrix_density": float(nonzeros / (n_users * n_items)),
        "dimensions": dimensions,
        "method": f"implicit ALS (alpha {ALS_ALPHA}, regularisation {ALS_REGULARISATION}, {ALS_ITERATIONS} iterations)",
    }
    return report


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


def user_vectors(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, recency_half_life_days: float, end_day: date | None = None
) -> StepReport:
    spark, report = session(), StepReport(USER_VECTORS)
    with report.timed("read"):
        purchases, window = window_purchases(spark, conn, history_days, end_day)
        items = read_table(spark, ITEM_VECTORS).select("item_id", "vector")
    with report.timed("compute"):
        # Items are looked up by id: the item vectors may come from another window.
        weighted = purchases.join(items, "item_id").withColumn("weight", F.pow(F.lit(0.5), F.col("age_days") / recency_half_life_days))
        counts = weighted.groupBy("user_id").agg(F.count("*").cast("int").alias("purchases"))
        vectors = mean_directions(weighted, "user_id", "weight").join(counts, "user_id")
        # A user whose items' vectors cancel out has no direction (steps.py drops them too).
        path = write_table(vectors.where(F.exists("vector", lambda x: x != 0)), USER_VECTORS)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, USER_VECTORS, path)
    used = weighted.count()
    report.stats = {
        **window,
        "users": report.rows,
        "purchases_used": used,
        "purchases_of_items_without_vector": purchases.count() - used,
        "recency_half_life_days": recency_half_life_days,
    }
    return report


def interest_clusters(conn: duckdb.DuckDBPyConnection, *, clusters: int, seed: int) -> StepReport:
    spark, report = session(), StepReport(INTEREST_CLUSTERS)
    with report.timed("read"):
        items = read_table(spark, ITEM_VECTORS).select("item_id", "vector").cache()
    with report.timed("compute"):
        # Cosine k-means on unit vectors: the spherical k-means compute.cluster_items does.
        features = items.withColumn("features", array_to_vector("vector"))
        model = KMeans(k=min(clusters, items.count()), distanceMeasure="cosine", seed=seed, featuresCol="features")
        labelled = model.fit(features).transform(features)
        # Number the clusters 0..n-1 without gaps (k-means can leave a cluster empty).
        used = sorted(row[0] for row in labelled.select("prediction").distinct().collect())
        renumber = spark.createDataFrame([(int(old), new) for new, old in enumerate(used)], "prediction int, cluster_id int")
        labelled = labelled.join(F.broadcast(renumber), "prediction").select("item_id", "vector", "cluster_id")
        centroids = mean_directions(labelled, "cluster_id").withColumnRenamed("vector", "centroid")
        sizes = labelled.groupBy("cluster_id").agg(F.count("*").cast("int").alias("cluster_size"))
        similarity = F.aggregate(F.zip_with("vector", "centroid", lambda a, b: a * b), F.lit(0.0), lambda s, x: s + x)
        table = labelled.join(centroids, "cluster_id").join(sizes, "cluster_id").withColumn("centroid_similarity", similarity.cast("float"))
        path = write_table(table, INTEREST_CLUSTERS)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, INTEREST_CLUSTERS, path)
    items.unpersist()
    sizes = conn.execute(
        f"SELECT any_value(cluster_size) AS size FROM {INTEREST_CLUSTERS.qualified} GROUP BY cluster_id ORDER BY cluster_id"
    ).fetchnumpy()["size"]
    mean_similarity = scalar(conn, f"SELECT avg(centroid_similarity) FROM {INTEREST_CLUSTERS.qualified}")
    report.stats = {
        "clusters": len(sizes),
        "cluster_sizes": np.asarray(sizes, dtype=np.int64),
        "mean_centroid_similarity": round(float(mean_similarity), 4),
    }
    return report


def cluster_centroids(spark: SparkSession) -> np.ndarray:
    """Interest cluster centres (normalised mean item vector), indexed by cluster_id."""
    members = read_table(spark, ITEM_VECTORS).select("item_id", "vector").join(read_table(spark, INTEREST_CLUSTERS), "item_id")
    cluster_ids, vectors = collect_vectors(mean_directions(members, "cluster_id"), "cluster_id")
    centroids = np.zeros((int(cluster_ids.max()) + 1, vectors.shape[1]), dtype=np.float32)
    centroids[cluster_ids] = vectors
    return centroids


def user_interest_clusters(conn: duckdb.DuckDBPyConnection, *, clusters_per_user: int) -> StepReport:
    spark, report = session(), StepReport(USER_INTEREST_CLUSTERS)
    with report.timed("read"):
        users = read_table(spark, USER_VECTORS)
        centroids = cluster_centroids(spark)
    with report.timed("compute"):
        nearest = nearest_centroids(users, "user_id", centroids, clusters_per_user).withColumnRenamed("centroid", "cluster_id")
        path = write_table(nearest, USER_INTEREST_CLUSTERS)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, USER_INTEREST_CLUSTERS, path)
    top_score = scalar(conn, f"SELECT avg(score) FROM {USER_INTEREST_CLUSTERS.qualified} WHERE rank = 1")
    report.stats = {
        "users": users.count(),
        "clusters_per_user": clusters_per_user,
        "mean_top_cluster_score": round(float(top_score or 0.0), 4),
    }
    return report


def user_cluster_candidates(
    conn: duckdb.DuckDBPyConnection, *, history_days: int, candidates_per_user: int, end_day: date | None = None
) -> StepReport:
    spark, report = session(), StepReport(USER_CLUSTER_CANDIDATES)
    with report.timed("read"):
        users = read_table(spark, USER_VECTORS).select(F.col("user_id").alias("query_id"), "vector")
        probes = read_table(spark, USER_INTEREST_CLUSTERS).select(F.col("user_id").alias("query_id"), F.col("cluster_id").alias("block"))
        purchases, window = window_purchases(spark, conn, history_days, end_day)
        bought = purchases.groupBy(F.col("user_id").alias("query_id")).agg(F.collect_set("item_id").alias("excluded"))
        items = read_table(spark, ITEM_VECTORS).join(read_table(spark, INTEREST_CLUSTERS), "item_id")
    with report.timed("compute"):
        queries = users.join(probes, "query_id").join(bought, "query_id", "left")
        base = items.select(F.col("item_id").alias("base_id"), "vector", F.col("cluster_id").alias("block"))
        found = blocked_top_k(queries, base, candidates_per_user).select(
            F.col("query_id").alias("user_id"), "rank", F.col("base_id").alias("item_id"), "score", F.col("block").alias("cluster_id")
        )
        path = write_table(found, USER_CLUSTER_CANDIDATES)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, USER_CLUSTER_CANDIDATES, path)
    n_users = users.count()
    per_user = conn.execute(f"SELECT count(*) AS n FROM {USER_CLUSTER_CANDIDATES.qualified} GROUP BY user_id").fetchnumpy()["n"]
    report.stats = {
        **window,
        "users": n_users,
        "users_without_candidates": n_users - len(per_user),
        "mean_candidates_per_user": round(float(per_user.sum() / max(n_users, 1)), 2),
        "share_of_users_with_full_list": round(float((per_user == candidates_per_user).sum() / max(n_users, 1)), 4),
    }
    return report


def similar_items(conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
    return _similar(conn, ITEM_VECTORS, SIMILAR_ITEMS, **search)


def similar_users(conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
    return _similar(conn, USER_VECTORS, SIMILAR_USERS, **search)


def search_lists(spark: SparkSession, rows: DataFrame, count: int, list_size: int, probes: int, seed: int) -> tuple[DataFrame, int]:
    """(id, vector, probes): the search lists every row probes, nearest first; and how many lists.

    As compute.search_lists: about count/list_size lists from a k-means fitted on a sample,
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
    spark, report = session(), StepReport(target)
    id_column, neighbour_column = target.columns[0].name, target.columns[2].name
    with report.timed("read"):
        rows = read_table(spark, source).select(F.col(id_column).alias("id"), "vector").cache()
        count = rows.count()
    with report.timed("index"):
        indexed, lists = search_lists(spark, rows, count, search_list_size, search_probes, seed)
        indexed = indexed.cache()
    with report.timed("compute"):
        queries = indexed.select(
            F.col("id").alias("query_id"), "vector", F.explode("probes").alias("block"), F.array("id").alias("excluded")
        )
        # Queries and base rows come from the same frame: fresh aliases keep the cogroup unambiguous.
        base = indexed.select(F.col("id").alias("base_id"), F.col("vector").alias("vector"), F.col("probes")[0].alias("block"))
        found = blocked_top_k(queries, base, neighbours).select(
            F.col("query_id").alias(id_column), "rank", F.col("base_id").alias(neighbour_column), "score"
        )
        path = write_table(found, target)
    with report.timed("write"):
        report.rows = load_into_warehouse(conn, target, path)
    list_sizes = indexed.groupBy(F.col("probes")[0]).count().agg(F.max("count")).first()[0]
    top_score = scalar(conn, f"SELECT avg(score) FROM {target.qualified} WHERE rank = 1")
    report.stats = {
        "rows_searched": count,
        "neighbours": neighbours,
        "search": "exact" if lists == 1 else "inverted file (k-means lists)",
        "search_lists": lists,
        "search_probes": min(search_probes, lists),
        "largest_search_list": int(list_sizes or 0),
        "mean_top1_score": round(float(top_score or 0.0), 4),
    }
    if lists > 1:
        with report.timed("recall"):
            report.stats["recall_vs_exact"] = round(measure_recall(conn, rows, target, neighbours, recall_sample, seed), 4)
            report.stats["recall_sample"] = min(recall_sample, count)
    rows.unpersist()
    indexed.unpersist()
    return report


def measure_recall(conn: duckdb.DuckDBPyConnection, rows: DataFrame, target: TableSpec, k: int, sample: int, seed: int) -> float:
    """Recall@k of the written neighbours against exact search, for a random sample of rows.

    The sample's vectors go to every partition of ``rows`` (a broadcast in the closure); each
    partition returns its exact top-k per sampled row and a window keeps the overall top-k.
    """
    count = rows.count()
    picked = rows.sample(fraction=min(1.0, 2.0 * sample / count), seed=seed).limit(sample).toPandas()
    sample_ids, sample_vectors = picked["id"].to_numpy(), to_matrix(picked["vector"])
    truth = ranked(rows.mapInPandas(sample_search(sample_ids, sample_vectors, k), FOUND_SCHEMA), "query_id", "base_id", k).toPandas()
    id_column, neighbour_column = target.columns[0].name, target.columns[2].name
    written = conn.execute(
        f"SELECT {id_column}, rank, {neighbour_column} FROM {target.qualified} WHERE list_contains(?, {id_column})",
        [sample_ids.tolist()],
    ).df()
    return compute.recall(
        _top_k(written, id_column, neighbour_column, sample_ids, k), _top_k(truth, "query_id", "base_id", sample_ids, k)
    )


def _top_k(rows: pd.DataFrame, key: str, value: str, keys: np.ndarray, k: int) -> compute.TopK:
    """Long (key, rank, value) rows as a TopK over ``keys`` (scores are not needed for recall)."""
    order = np.argsort(keys)
    slot = order[compute.positions(keys[order], rows[key].to_numpy())]
    indices = np.full((len(keys), k), -1, dtype=np.int64)
    indices[slot, rows["rank"].to_numpy() - 1] = rows[value].to_numpy()
    return compute.TopK(indices, np.where(indices >= 0, 0.0, -np.inf).astype(np.float32))

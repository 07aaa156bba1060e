"""The Spark candidate engine: the steps, tables and statistics of steps.py, computed on Spark.

Selected by the candidate_engine resource (resources/candidate_engine.py): the asset keys,
configs and warehouse tables stay the same, only the engine changes. Each step reads its
inputs and writes its table through spark_io.py (Parquet in the artifact store, then loaded
into the warehouse) and computes with Spark: MLlib ALS for the item vectors, MLlib Summarizer
for the user vectors and cluster centres, MLlib KMeans for the interest clusters and the
search lists, and the blocked top-k search of spark_frames.py for candidates and neighbours.

Item vectors differ by method (the scikit-learn path uses an SVD): implicit-feedback ALS is
what MLlib offers at cluster scale, and on the synthetic marketplace it recovers the planted
co-purchase groups and categories as well as the SVD (tests/test_spark_candidates.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import numpy as np
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_assets.candidates import top_k_search
from recsys_assets.candidates.report import StepReport
from recsys_assets.candidates.spark_frames import (
    blocked_top_k,
    collect_vectors,
    dense_index,
    exact_sample_neighbours,
    mean_directions,
    nearest_centroids,
    normalised,
    search_lists,
    top_k_of_rows,
)
from recsys_assets.candidates.spark_io import SparkTables
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
from recsys_assets.candidates.warehouse_io import load_into_warehouse, scalar

# Implicit ALS, tuned on the synthetic marketplace (3k users): confidence 1 + 10 * purchases
# and a strong regularisation match the degree-normalised SVD on same-group and
# same-category neighbours; a low alpha or weak regularisation favours popular items.
ALS_ALPHA = 10.0
ALS_REGULARISATION = 1.0
ALS_ITERATIONS = 10


@dataclass(frozen=True)
class SparkSteps:
    """The steps of steps.py, same signatures and tables, run in ``tables``' session."""

    tables: SparkTables

    def item_vectors(
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, dimensions: int, seed: int, end_day: date | None = None
    ) -> StepReport:
        spark, report = self.tables.spark, StepReport(ITEM_VECTORS)
        with report.timed("read"):
            purchases, window = self.tables.window_purchases(conn, history_days, end_day)
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
            path = self.tables.write(factors.join(items, "item_index").join(buyers, "item_id"), ITEM_VECTORS)
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

    def user_vectors(
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, recency_half_life_days: float, end_day: date | None = None
    ) -> StepReport:
        report = StepReport(USER_VECTORS)
        with report.timed("read"):
            purchases, window = self.tables.window_purchases(conn, history_days, end_day)
            items = self.tables.read(ITEM_VECTORS).select("item_id", "vector")
        with report.timed("compute"):
            # Items are looked up by id: the item vectors may come from another window.
            weighted = purchases.join(items, "item_id").withColumn("weight", F.pow(F.lit(0.5), F.col("age_days") / recency_half_life_days))
            counts = weighted.groupBy("user_id").agg(F.count("*").cast("int").alias("purchases"))
            vectors = mean_directions(weighted, "user_id", "weight").join(counts, "user_id")
            # A user whose items' vectors cancel out has no direction (steps.py drops them too).
            path = self.tables.write(vectors.where(F.exists("vector", lambda x: x != 0)), USER_VECTORS)
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

    def interest_clusters(self, conn: duckdb.DuckDBPyConnection, *, clusters: int, seed: int) -> StepReport:
        spark, report = self.tables.spark, StepReport(INTEREST_CLUSTERS)
        with report.timed("read"):
            items = self.tables.read(ITEM_VECTORS).select("item_id", "vector").cache()
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
            path = self.tables.write(table, INTEREST_CLUSTERS)
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

    def _cluster_centroids(self) -> np.ndarray:
        """Interest cluster centres (normalised mean item vector), indexed by cluster_id."""
        members = self.tables.read(ITEM_VECTORS).select("item_id", "vector").join(self.tables.read(INTEREST_CLUSTERS), "item_id")
        cluster_ids, vectors = collect_vectors(mean_directions(members, "cluster_id"), "cluster_id")
        centroids = np.zeros((int(cluster_ids.max()) + 1, vectors.shape[1]), dtype=np.float32)
        centroids[cluster_ids] = vectors
        return centroids

    def user_interest_clusters(self, conn: duckdb.DuckDBPyConnection, *, clusters_per_user: int) -> StepReport:
        report = StepReport(USER_INTEREST_CLUSTERS)
        with report.timed("read"):
            users = self.tables.read(USER_VECTORS)
            centroids = self._cluster_centroids()
        with report.timed("compute"):
            nearest = nearest_centroids(users, "user_id", centroids, clusters_per_user).withColumnRenamed("centroid", "cluster_id")
            path = self.tables.write(nearest, USER_INTEREST_CLUSTERS)
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
        self, conn: duckdb.DuckDBPyConnection, *, history_days: int, candidates_per_user: int, end_day: date | None = None
    ) -> StepReport:
        report = StepReport(USER_CLUSTER_CANDIDATES)
        with report.timed("read"):
            users = self.tables.read(USER_VECTORS).select(F.col("user_id").alias("query_id"), "vector")
            probes = self.tables.read(USER_INTEREST_CLUSTERS).select(F.col("user_id").alias("query_id"), F.col("cluster_id").alias("block"))
            purchases, window = self.tables.window_purchases(conn, history_days, end_day)
            bought = purchases.groupBy(F.col("user_id").alias("query_id")).agg(F.collect_set("item_id").alias("excluded"))
            items = self.tables.read(ITEM_VECTORS).join(self.tables.read(INTEREST_CLUSTERS), "item_id")
        with report.timed("compute"):
            queries = users.join(probes, "query_id").join(bought, "query_id", "left")
            base = items.select(F.col("item_id").alias("base_id"), "vector", F.col("cluster_id").alias("block"))
            found = blocked_top_k(queries, base, candidates_per_user).select(
                F.col("query_id").alias("user_id"), "rank", F.col("base_id").alias("item_id"), "score", F.col("block").alias("cluster_id")
            )
            path = self.tables.write(found, USER_CLUSTER_CANDIDATES)
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

    def similar_items(self, conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
        return self._similar(conn, ITEM_VECTORS, SIMILAR_ITEMS, **search)

    def similar_users(self, conn: duckdb.DuckDBPyConnection, **search: Any) -> StepReport:
        return self._similar(conn, USER_VECTORS, SIMILAR_USERS, **search)

    def _similar(
        self,
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
            rows = self.tables.read(source).select(F.col(id_column).alias("id"), "vector").cache()
            count = rows.count()
        with report.timed("index"):
            indexed, lists = search_lists(rows, count, search_list_size, search_probes, seed)
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
            path = self.tables.write(found, target)
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
    """Recall@k of the written neighbours against exact search, for a random sample of rows."""
    sample_ids, exact = exact_sample_neighbours(rows, k, sample, seed)
    id_column, neighbour_column = target.columns[0].name, target.columns[2].name
    written = conn.execute(
        f"SELECT {id_column}, rank, {neighbour_column} FROM {target.qualified} WHERE list_contains(?, {id_column})",
        [sample_ids.tolist()],
    ).df()
    return top_k_search.recall(top_k_of_rows(written, id_column, neighbour_column, sample_ids, k), exact)

"""Candidates layer: item and user vectors, interest clusters, similar items and similar users.

Dagster wiring only; the work is in steps.py (warehouse in/out) and compute.py (numpy,
scikit-learn). Every asset writes one table of schema ``candidates`` (same name as the
asset key) in the warehouse concurrency pool, and reports what a person checks first:
sizes, seconds per phase, and a preview with item categories to eyeball.

    staging/fct_purchases -> item_vectors -> interest_clusters -> user_interest_clusters
                          -> user_vectors  ------------------------^       -> user_cluster_candidates
    item_vectors -> similar_items;  user_vectors -> similar_users
"""

import os
from datetime import timedelta
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from recsys_assets.candidates import steps
from recsys_assets.candidates.steps import (
    INTEREST_CLUSTERS,
    ITEM_VECTORS,
    SIMILAR_ITEMS,
    SIMILAR_USERS,
    USER_CLUSTER_CANDIDATES,
    USER_INTEREST_CLUSTERS,
    USER_VECTORS,
    StepReport,
    TableSpec,
)
from recsys_assets.metadata import frame_table
from resources.splits import EvaluationSplit
from resources.warehouse import WAREHOUSE_POOL

OWNERS = ["team:ml"]
KINDS = {"scikit-learn", "duckdb"}

# ---- engine selection (README, "Running at scale"). RECSYS_CANDIDATE_ENGINE=sklearn (default:
# steps.py) or spark (spark.py, needs the `spark` extra): the same step functions writing the
# same tables, so the asset keys, configs and checks do not change with the engine.
CANDIDATE_ENGINE = os.environ.get("RECSYS_CANDIDATE_ENGINE", "sklearn")
if CANDIDATE_ENGINE == "spark":
    from recsys_assets.candidates import spark as steps  # noqa: F811

    KINDS = {"spark", "duckdb"}
elif CANDIDATE_ENGINE != "sklearn":
    raise ValueError(f"RECSYS_CANDIDATE_ENGINE={CANDIDATE_ENGINE!r}: expected 'sklearn' or 'spark'.")
# ---- end of engine selection
FCT_PURCHASES = dg.AssetKey(["staging", "fct_purchases"])
ITEM_FEATURES = dg.AssetKey(["features", "item_features"])  # item categories for the previews
PREVIEW_ROWS = 5


# ---------------------------------------------------------------- configuration


class HistoryWindowConfig(dg.Config):
    history_days: int = Field(
        default=182,
        gt=0,
        description="Days of purchases used, ending at the newest purchase day (default: the features' 6 months). "
        "Keep it equal across item_vectors, user_vectors and user_cluster_candidates.",
    )


class ItemVectorsConfig(HistoryWindowConfig):
    dimensions: int = Field(default=64, gt=0, description="Length of the item and user vectors (SVD components).")
    seed: int = Field(default=0, description="Random seed of the randomized SVD.")


class UserVectorsConfig(HistoryWindowConfig):
    recency_half_life_days: float = Field(
        default=60.0, gt=0, description="A purchase this many days old counts half as much as one on the last day."
    )


class InterestClustersConfig(dg.Config):
    clusters: int = Field(default=100, gt=0, description="Number of interest clusters (k of k-means).")
    seed: int = Field(default=0, description="Random seed of k-means.")


class UserInterestClustersConfig(dg.Config):
    clusters_per_user: int = Field(default=3, gt=0, description="Nearest interest clusters kept per user.")


class UserClusterCandidatesConfig(HistoryWindowConfig):
    candidates_per_user: int = Field(default=50, gt=0, description="Top-N candidate items kept per user.")


class NeighboursConfig(dg.Config):
    neighbours: int = Field(default=20, gt=0, description="K: similar items / users kept per row.")
    search_list_size: int = Field(
        default=1000,
        gt=0,
        description="Rows per inverted-file list. Up to this many rows the search is exact; beyond, rows are "
        "split into about rows/search_list_size k-means lists and a query searches only its nearest lists.",
    )
    search_probes: int = Field(default=4, gt=0, description="Lists searched per query (more = higher recall, slower).")
    recall_sample: int = Field(default=500, gt=0, description="Rows whose approximate neighbours are compared with exact search.")
    seed: int = Field(default=0, description="Random seed of the list k-means and the recall sample.")


# ---------------------------------------------------------------- assets


def _column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.sql_type, description=c.description) for c in spec.columns])


def _candidate_asset(spec: TableSpec, deps: list[dg.AssetKey], how: str):
    """The decorator every candidates asset shares: key, docs and column schema from its table spec."""
    columns = "\n".join(f"- `{c.name}` {c.sql_type}: {c.description}" for c in spec.columns)
    return dg.asset(
        key=["candidates", spec.name],
        description=f"{spec.description} {how}\n\nTable `{spec.qualified}`:\n{columns}",
        group_name="candidates",
        owners=OWNERS,
        kinds=KINDS,
        pool=WAREHOUSE_POOL,
        deps=deps,
        metadata={"dagster/column_schema": _column_schema(spec), "dagster/table_name": spec.qualified},
    )


def _key(spec: TableSpec) -> dg.AssetKey:
    return dg.AssetKey(["candidates", spec.name])


def _result(report: StepReport, **extra) -> dg.MaterializeResult:
    numbers = {name: value for name, value in report.stats.items() if not isinstance(value, np.ndarray)}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.rows,
            "dagster/table_name": report.table.qualified,
            "seconds_total": round(sum(report.seconds.values()), 2),
            **{f"seconds_{phase}": value for phase, value in report.seconds.items()},
            **numbers,
            **extra,
        }
    )


def _preview(conn, sql: str) -> dg.TableMetadataValue:
    return frame_table(conn.sql(sql).df())


def _sample(table: TableSpec, id_column: str) -> str:
    """A few ids of a table, picked by hash: stable across runs and not biased to small ids."""
    return f"(SELECT {id_column} FROM {table.qualified} ORDER BY hash({id_column}) LIMIT {PREVIEW_ROWS})"


def _training_end(conn, splits: EvaluationSplit):
    """The last day candidates may learn from: the day before the validation period."""
    return splits.dates(conn).train_cutoff - timedelta(days=1)


@_candidate_asset(
    ITEM_VECTORS,
    deps=[FCT_PURCHASES],
    how="Why SVD: one sparse randomized SVD pass (O(purchases x dimensions)), deterministic for a seed, "
    "no training loop to tune, and Spark's RowMatrix.computeSVD reproduces it at scale.",
)
def item_vectors(config: ItemVectorsConfig, warehouse: DuckDBResource, splits: EvaluationSplit) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.item_vectors(
            conn, history_days=config.history_days, dimensions=config.dimensions, seed=config.seed, end_day=_training_end(conn, splits)
        )
    return _result(report)


@_candidate_asset(USER_VECTORS, deps=[FCT_PURCHASES, _key(ITEM_VECTORS)], how="Recent purchases weigh more (half-life in config).")
def user_vectors(config: UserVectorsConfig, warehouse: DuckDBResource, splits: EvaluationSplit) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.user_vectors(
            conn,
            history_days=config.history_days,
            recency_half_life_days=config.recency_half_life_days,
            end_day=_training_end(conn, splits),
        )
    return _result(report)


@_candidate_asset(
    INTEREST_CLUSTERS, deps=[_key(ITEM_VECTORS), ITEM_FEATURES], how="Metadata: cluster sizes and category purity."
)
def interest_clusters(config: InterestClustersConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.interest_clusters(conn, clusters=config.clusters, seed=config.seed)
        purity = conn.sql(
            f"""
            WITH per_category AS (
                SELECT c.cluster_id, f.category_id, count(*) AS items
                FROM {INTEREST_CLUSTERS.qualified} AS c LEFT JOIN features.item_features AS f USING (item_id)
                GROUP BY ALL)
            SELECT cluster_id, sum(items) AS items, arg_max(category_id, items) AS top_category,
                   max(items) AS top_category_items
            FROM per_category GROUP BY cluster_id ORDER BY items DESC, cluster_id
            """
        ).df()
    sizes = report.stats["cluster_sizes"]
    return _result(
        report,
        cluster_size_min=int(sizes.min()),
        cluster_size_median=float(np.median(sizes)),
        cluster_size_max=int(sizes.max()),
        cluster_size_histogram=frame_table(size_histogram(sizes)),
        # Share of items whose cluster's most common category is their own: how much the
        # clusters follow the catalogue tree, a sanity check a person can read.
        category_purity=round(float(purity["top_category_items"].sum() / purity["items"].sum()), 4),
        largest_clusters=frame_table(purity.head(10)),
    )


def size_histogram(sizes: np.ndarray) -> pd.DataFrame:
    """Cluster sizes in power-of-two buckets (1, 2-3, 4-7, ...), with a bar a person reads at a glance."""
    buckets = np.floor(np.log2(sizes)).astype(int)
    counts = np.bincount(buckets)
    widest = counts.max()
    rows = []
    for bucket, count in enumerate(counts):
        low, high = 2**bucket, 2 ** (bucket + 1) - 1
        rows.append({"items_per_cluster": str(low) if low == high else f"{low}-{high}", "clusters": int(count),
                     "bar": "█" * round(20 * count / widest)})  # fmt: skip
    return pd.DataFrame(rows)


@_candidate_asset(
    USER_INTEREST_CLUSTERS, deps=[_key(USER_VECTORS), _key(INTEREST_CLUSTERS)], how="The first hop of user -> clusters -> candidates."
)
def user_interest_clusters(config: UserInterestClustersConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.user_interest_clusters(conn, clusters_per_user=config.clusters_per_user)
        preview = _preview(
            conn,
            f"""
            SELECT user_id, string_agg(cluster_id || ' (' || round(score, 2) || ')', ', ' ORDER BY rank) AS clusters_and_scores
            FROM {USER_INTEREST_CLUSTERS.qualified} WHERE user_id IN {_sample(USER_VECTORS, 'user_id')}
            GROUP BY user_id ORDER BY user_id
            """,
        )
    return _result(report, preview=preview)


@_candidate_asset(
    USER_CLUSTER_CANDIDATES,
    deps=[FCT_PURCHASES, _key(USER_INTEREST_CLUSTERS), _key(USER_VECTORS), _key(ITEM_VECTORS), _key(INTEREST_CLUSTERS)],
    how="Searched cluster by cluster (a user only scores the items of their own clusters).",
)
def user_cluster_candidates(
    config: UserClusterCandidatesConfig, warehouse: DuckDBResource, splits: EvaluationSplit
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.user_cluster_candidates(
            conn,
            history_days=config.history_days,
            candidates_per_user=config.candidates_per_user,
            end_day=_training_end(conn, splits),
        )
        preview = _preview(
            conn,
            f"""
            SELECT user_id,
                   string_agg(item_id || ' (' || round(score, 2) || ')', ', ' ORDER BY rank) FILTER (rank <= 5) AS top_candidates,
                   count(DISTINCT cluster_id) AS from_clusters, count(*) AS candidates
            FROM {USER_CLUSTER_CANDIDATES.qualified} WHERE user_id IN {_sample(USER_VECTORS, 'user_id')}
            GROUP BY user_id ORDER BY user_id
            """,
        )
    return _result(report, preview=preview)


@_candidate_asset(
    SIMILAR_ITEMS,
    deps=[_key(ITEM_VECTORS), ITEM_FEATURES],
    how="Exact search up to search_list_size items, inverted-file search (recall measured) beyond.",
)
def similar_items(config: NeighboursConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.similar_items(conn, **config.model_dump())
        preview = _preview(
            conn,
            f"""
            SELECT s.item_id, any_value(f.category_id) AS category,
                   string_agg(s.neighbour_item_id || ' (cat ' || n.category_id || ', ' || round(s.score, 2) || ')', ', ' ORDER BY s.rank)
                       AS top_neighbours
            FROM {SIMILAR_ITEMS.qualified} AS s
            LEFT JOIN features.item_features AS f ON f.item_id = s.item_id
            LEFT JOIN features.item_features AS n ON n.item_id = s.neighbour_item_id
            WHERE s.item_id IN {_sample(ITEM_VECTORS, 'item_id')} AND s.rank <= 5
            GROUP BY s.item_id ORDER BY s.item_id
            """,
        )
    return _result(report, preview=preview)


@_candidate_asset(
    SIMILAR_USERS,
    deps=[_key(USER_VECTORS)],
    how="Exact search up to search_list_size users, inverted-file search (recall measured) beyond.",
)
def similar_users(config: NeighboursConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = steps.similar_users(conn, **config.model_dump())
        preview = _preview(
            conn,
            f"""
            SELECT user_id, string_agg(neighbour_user_id || ' (' || round(score, 2) || ')', ', ' ORDER BY rank) AS top_neighbours
            FROM {SIMILAR_USERS.qualified} WHERE user_id IN {_sample(USER_VECTORS, 'user_id')} AND rank <= 5
            GROUP BY user_id ORDER BY user_id
            """,
        )
    return _result(report, preview=preview)


# ---------------------------------------------------------------- checks


@dataclass(frozen=True)
class ViolationCheck:
    """A check that passes when ``violations_sql`` returns no rows; it shows a few of them if not."""

    table: TableSpec
    name: str
    description: str
    violations_sql: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def build_check(check: ViolationCheck) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=_key(check.table),
        name=check.name,
        description=check.description,
        blocking=check.severity == dg.AssetCheckSeverity.ERROR,
    )
    def run_check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            count = conn.execute(f"SELECT count(*) FROM ({check.violations_sql})").fetchall()[0][0]
            examples = conn.sql(f"SELECT * FROM ({check.violations_sql}) LIMIT {PREVIEW_ROWS}").df()
        return dg.AssetCheckResult(
            passed=count == 0,
            severity=check.severity,
            metadata={"violations": count, **({"examples": frame_table(examples)} if count else {})},
        )

    return run_check


def coverage_check(table: TableSpec, population: TableSpec, entity: str, what: str, severity=dg.AssetCheckSeverity.ERROR):
    id_column = population.columns[0].name
    return ViolationCheck(
        table,
        f"every_{entity}_has_{what}",
        f"Every {entity} in {population.qualified} (i.e. with history) has {what}, when there are at least two {entity}s.",
        f"""SELECT p.{id_column} FROM {population.qualified} AS p
            WHERE (SELECT count(*) FROM {population.qualified}) > 1
              AND NOT EXISTS (SELECT 1 FROM {table.qualified} AS t WHERE t.{id_column} = p.{id_column})""",
        severity,
    )


def ranked_scores_check(table: TableSpec) -> ViolationCheck:
    id_column = table.columns[0].name
    return ViolationCheck(
        table,
        "scores_in_range",
        "Scores are cosines in [-1, 1] (not NULL or NaN), and ranks 1, 2, ... follow descending score.",
        f"""SELECT * FROM (
                SELECT {id_column}, rank, score,
                       lag(score) OVER (PARTITION BY {id_column} ORDER BY rank) AS previous_score,
                       row_number() OVER (PARTITION BY {id_column} ORDER BY rank) AS position
                FROM {table.qualified})
            WHERE score IS NULL OR NOT (score BETWEEN -1 AND 1) OR score > previous_score OR rank <> position""",
    )


def neighbour_checks(table: TableSpec, population: TableSpec, entity: str) -> list[ViolationCheck]:
    id_column, neighbour_column = table.columns[0].name, table.columns[2].name
    return [
        coverage_check(table, population, entity, "neighbours"),
        ViolationCheck(
            table,
            "no_self_neighbours",
            f"No {entity} is listed as its own neighbour.",
            f"SELECT * FROM {table.qualified} WHERE {id_column} = {neighbour_column}",
        ),
        ranked_scores_check(table),
    ]


def unit_vectors_check(table: TableSpec) -> ViolationCheck:
    id_column = table.columns[0].name
    norm = "sqrt(list_dot_product(vector, vector))"
    return ViolationCheck(
        table,
        "unit_vectors",
        "Every vector has length 1 (finite, not all zeros): the candidate searches read a dot product as a cosine.",
        f"SELECT {id_column}, {norm} AS norm FROM {table.qualified} WHERE vector IS NULL OR NOT (abs({norm} - 1) <= 1e-3)",
    )


# A cluster's stated size is its member count, and ids run 0..clusters-1 (a missing id is an empty cluster).
CLUSTER_SIZES = ViolationCheck(
    INTEREST_CLUSTERS,
    "cluster_sizes_consistent",
    "Every cluster's cluster_size is its number of items, and cluster ids run 0..clusters-1 with none empty.",
    f"""WITH sizes AS (
            SELECT cluster_id, count(*) AS items, min(cluster_size) AS stated_min, max(cluster_size) AS stated_max
            FROM {INTEREST_CLUSTERS.qualified} GROUP BY cluster_id)
        SELECT cluster_id, items, stated_min AS stated_size FROM sizes WHERE items <> stated_min OR items <> stated_max
        UNION ALL
        SELECT NULL, count(*), max(cluster_id) + 1 FROM sizes HAVING max(cluster_id) + 1 <> count(*)""",
)
# k-means that puts most items in one cluster gives everyone the same candidates: worth a look, not a stop.
NO_DOMINANT_CLUSTER = ViolationCheck(
    INTEREST_CLUSTERS,
    "no_dominant_cluster",
    "No interest cluster holds more than half of the items (when there are several clusters).",
    f"""SELECT cluster_id, count(*) AS items FROM {INTEREST_CLUSTERS.qualified} GROUP BY cluster_id
        HAVING count(*) > 0.5 * (SELECT count(*) FROM {INTEREST_CLUSTERS.qualified})
           AND (SELECT count(DISTINCT cluster_id) FROM {INTEREST_CLUSTERS.qualified}) > 1""",
    dg.AssetCheckSeverity.WARN,
)

CHECKS = [
    unit_vectors_check(ITEM_VECTORS),
    unit_vectors_check(USER_VECTORS),
    CLUSTER_SIZES,
    NO_DOMINANT_CLUSTER,
    *neighbour_checks(SIMILAR_ITEMS, ITEM_VECTORS, "item"),
    *neighbour_checks(SIMILAR_USERS, USER_VECTORS, "user"),
    coverage_check(USER_INTEREST_CLUSTERS, USER_VECTORS, "user", "clusters"),
    ranked_scores_check(USER_INTEREST_CLUSTERS),
    # A user who already bought every item of their clusters has no candidates: rare, worth a warning.
    coverage_check(USER_CLUSTER_CANDIDATES, USER_VECTORS, "user", "candidates", dg.AssetCheckSeverity.WARN),
    ranked_scores_check(USER_CLUSTER_CANDIDATES),
]

candidate_assets = [
    item_vectors,
    user_vectors,
    interest_clusters,
    user_interest_clusters,
    user_cluster_candidates,
    similar_items,
    similar_users,
]
candidate_checks = [build_check(check) for check in CHECKS]

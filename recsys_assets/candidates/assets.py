"""Candidates layer: item and user vectors, interest clusters, similar items and similar users.

Dagster wiring only: the candidate_engine resource (resources/candidate_engine.py) gives the
step functions that do the work (steps.py with scikit-learn, spark.py on Spark), tables.py
describes the tables, config.py the run configs and checks.py the checks. Every asset writes
one table of schema ``candidates`` (same name as the asset key) in the warehouse concurrency
pool, and reports what a person checks first: sizes, seconds per phase, and a preview with
item categories to eyeball.

    staging/fct_purchases -> item_vectors -> interest_clusters -> user_interest_clusters
                          -> user_vectors  ------------------------^       -> user_cluster_candidates
    item_vectors -> similar_items;  user_vectors -> similar_users
"""

from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from recsys_assets.candidates.checks import CHECKS, PREVIEW_ROWS, build_check
from recsys_assets.candidates.config import (
    InterestClustersConfig,
    ItemVectorsConfig,
    NeighboursConfig,
    UserClusterCandidatesConfig,
    UserInterestClustersConfig,
    UserVectorsConfig,
)
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
from recsys_assets.keys import FCT_PURCHASES, ITEM_FEATURES
from recsys_assets.metadata import frame_table
from resources import settings
from resources.candidate_engine import CandidateEngine
from resources.splits import EvaluationSplit
from resources.warehouse import WAREHOUSE_POOL

OWNERS = ["team:ml"]
# Kinds are fixed when the definitions are built, so they follow the setting that
# default_resources() also binds the engine from.
KINDS = {"spark" if settings.candidate_engine() == "spark" else "scikit-learn", "duckdb"}


def _column_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.sql_type, description=c.description) for c in spec.columns])


def _candidate_asset(spec: TableSpec, deps: list[dg.AssetKey], how: str):
    """The decorator every candidates asset shares: key, docs and column schema from its table spec."""
    columns = "\n".join(f"- `{c.name}` {c.sql_type}: {c.description}" for c in spec.columns)
    return dg.asset(
        key=spec.asset_key,
        description=f"{spec.description} {how}\n\nTable `{spec.qualified}`:\n{columns}",
        group_name="candidates",
        owners=OWNERS,
        kinds=KINDS,
        pool=WAREHOUSE_POOL,
        deps=deps,
        metadata={"dagster/column_schema": _column_schema(spec), "dagster/table_name": spec.qualified},
    )


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
def item_vectors(
    config: ItemVectorsConfig, warehouse: DuckDBResource, splits: EvaluationSplit, candidate_engine: CandidateEngine
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().item_vectors(
            conn, history_days=config.history_days, dimensions=config.dimensions, seed=config.seed, end_day=_training_end(conn, splits)
        )
    return _result(report)


@_candidate_asset(USER_VECTORS, deps=[FCT_PURCHASES, ITEM_VECTORS.asset_key], how="Recent purchases weigh more (half-life in config).")
def user_vectors(
    config: UserVectorsConfig, warehouse: DuckDBResource, splits: EvaluationSplit, candidate_engine: CandidateEngine
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().user_vectors(
            conn,
            history_days=config.history_days,
            recency_half_life_days=config.recency_half_life_days,
            end_day=_training_end(conn, splits),
        )
    return _result(report)


@_candidate_asset(
    INTEREST_CLUSTERS, deps=[ITEM_VECTORS.asset_key, ITEM_FEATURES], how="Metadata: cluster sizes and category purity."
)
def interest_clusters(
    config: InterestClustersConfig, warehouse: DuckDBResource, candidate_engine: CandidateEngine
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().interest_clusters(conn, clusters=config.clusters, seed=config.seed)
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
    USER_INTEREST_CLUSTERS, deps=[USER_VECTORS.asset_key, INTEREST_CLUSTERS.asset_key], how="The first hop of user -> clusters -> candidates."
)
def user_interest_clusters(
    config: UserInterestClustersConfig, warehouse: DuckDBResource, candidate_engine: CandidateEngine
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().user_interest_clusters(conn, clusters_per_user=config.clusters_per_user)
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
    deps=[FCT_PURCHASES, USER_INTEREST_CLUSTERS.asset_key, USER_VECTORS.asset_key, ITEM_VECTORS.asset_key, INTEREST_CLUSTERS.asset_key],
    how="Searched cluster by cluster (a user only scores the items of their own clusters).",
)
def user_cluster_candidates(
    config: UserClusterCandidatesConfig, warehouse: DuckDBResource, splits: EvaluationSplit, candidate_engine: CandidateEngine
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().user_cluster_candidates(
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
    deps=[ITEM_VECTORS.asset_key, ITEM_FEATURES],
    how="Exact search up to search_list_size items, inverted-file search (recall measured) beyond.",
)
def similar_items(config: NeighboursConfig, warehouse: DuckDBResource, candidate_engine: CandidateEngine) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().similar_items(conn, **config.model_dump())
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
    deps=[USER_VECTORS.asset_key],
    how="Exact search up to search_list_size users, inverted-file search (recall measured) beyond.",
)
def similar_users(config: NeighboursConfig, warehouse: DuckDBResource, candidate_engine: CandidateEngine) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn:
        report = candidate_engine.steps().similar_users(conn, **config.model_dump())
        preview = _preview(
            conn,
            f"""
            SELECT user_id, string_agg(neighbour_user_id || ' (' || round(score, 2) || ')', ', ' ORDER BY rank) AS top_neighbours
            FROM {SIMILAR_USERS.qualified} WHERE user_id IN {_sample(USER_VECTORS, 'user_id')} AND rank <= 5
            GROUP BY user_id ORDER BY user_id
            """,
        )
    return _result(report, preview=preview)


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

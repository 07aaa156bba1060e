"""The candidate layer's asset checks: SQL that lists violations, and the checks built from it.

A check passes when its query returns no rows and shows a few of them when not; ERROR checks
block the assets downstream, WARN ones only flag a table worth a look.
"""

from dataclasses import dataclass

import dagster as dg
from dagster_duckdb import DuckDBResource

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
from recsys_assets.metadata import frame_table

# Rows a check shows of its violations (and an asset of its table, in its preview).
PREVIEW_ROWS = 5


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
        asset=check.table.asset_key,
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

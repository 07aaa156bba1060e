"""The candidate tables: name, description and typed columns of every table the layer writes.

Both engines write exactly these columns (warehouse_io.replace_table_from casts to them), and
the assets take their key, docs and column schema from here, so the contract lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

SCHEMA = "candidates"


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

    @property
    def asset_key(self) -> dg.AssetKey:
        """The asset that writes the table: candidates/<table>."""
        return dg.AssetKey([SCHEMA, self.name])


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

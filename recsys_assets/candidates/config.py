"""The run configuration of the candidate assets: what a person may change per materialization."""

import dagster as dg
from pydantic import Field


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

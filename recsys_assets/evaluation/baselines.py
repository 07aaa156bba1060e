"""Classic baseline recommenders: pure pandas / numpy / scipy, no Dagster, no warehouse.

Every baseline is fitted on ``BaselineInputs.training`` (purchases before the training
cut-off) and ranks items for each user from ``BaselineInputs.histories`` (the user's own
purchases before the evaluated period: the same information the LLM's prompt gets). A
baseline returns ``user_id, rank, item_id, score`` with up to ``n`` rows per user.

Items a user already bought are not removed: on the synthetic marketplace about 30% of
the held-out purchases are repeat purchases, so removing them would hand those hits away.

Personalised baselines fill the slots their own scores leave empty (a user with no
history, a short neighbourhood) with the globally popular items, score 0, as a production
recommender would; without it their lists would be shorter than the popularity lists they
are compared to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

# Users scored per block: a block's dense score matrix is users x items float32.
USER_BLOCK = 1024


@dataclass(frozen=True)
class BaselineInputs:
    training: pd.DataFrame  # user_id, item_id, ts: what a baseline may be fitted on
    histories: pd.DataFrame  # user_id, item_id, ts: each user's known purchases when recommending
    users: np.ndarray  # the users to recommend for
    training_end: pd.Timestamp  # the training cut-off; every training ts is before it
    history_end: pd.Timestamp  # the start of the evaluated period; every history ts is before it

    def __post_init__(self):
        # The guard against leakage lives with the data, not with each caller.
        if len(self.training) and self.training["ts"].max() >= self.training_end:
            raise ValueError(f"Training purchases reach {self.training['ts'].max()}, on or after the cut-off {self.training_end}.")
        if len(self.histories) and self.histories["ts"].max() >= self.history_end:
            raise ValueError(f"User histories reach {self.histories['ts'].max()}, inside the evaluated period from {self.history_end}.")


def baseline_inputs(purchases: pd.DataFrame, users, training_end, history_end) -> BaselineInputs:
    """Cut a full purchases frame (``user_id, item_id, ts``) into what baselines may see."""
    training_end, history_end = pd.Timestamp(training_end), pd.Timestamp(history_end)
    columns = ["user_id", "item_id", "ts"]
    return BaselineInputs(
        training=purchases.loc[purchases["ts"] < training_end, columns].reset_index(drop=True),
        histories=purchases.loc[purchases["ts"] < history_end, columns].reset_index(drop=True),
        users=np.asarray(sorted(set(users)), dtype=np.int64),
        training_end=training_end,
        history_end=history_end,
    )


def popularity(training: pd.DataFrame, since: pd.Timestamp | None = None) -> pd.Series:
    """Distinct buyers per item (from ``since`` on, if given), most popular first, ties by id."""
    window = training if since is None else training[training["ts"] >= since]
    buyers = window.groupby("item_id")["user_id"].nunique()
    return buyers.reset_index().sort_values(["user_id", "item_id"], ascending=[False, True]).set_index("item_id")["user_id"]


def same_list_for_everyone(ranking: pd.Series, users: np.ndarray, n: int) -> pd.DataFrame:
    top = ranking.head(n)
    return pd.DataFrame(
        {
            "user_id": np.repeat(users, len(top)),
            "rank": np.tile(np.arange(1, len(top) + 1, dtype=np.int32), len(users)),
            "item_id": np.tile(top.index.to_numpy(dtype=np.int64), len(users)),
            "score": np.tile(top.to_numpy(dtype=np.float64), len(users)),
        }
    )


def global_popularity(inputs: BaselineInputs, n: int) -> pd.DataFrame:
    """The items most users bought before the cut-off, the same list for everyone."""
    return same_list_for_everyone(popularity(inputs.training), inputs.users, n)


def recent_popularity(inputs: BaselineInputs, n: int, days: int) -> pd.DataFrame:
    """The items most users bought in the last ``days`` days before the cut-off, topped up
    with all-time popularity when that window has fewer than ``n`` items."""
    recent = popularity(inputs.training, since=inputs.training_end - pd.Timedelta(days=days))
    older = popularity(inputs.training).drop(recent.index) * 0.0  # after every recent item
    return same_list_for_everyone(pd.concat([recent.astype(float), older]), inputs.users, n)


@dataclass(frozen=True)
class ItemSpace:
    """Dense indices for the items a baseline scores."""

    item_ids: np.ndarray  # dense index -> item id, most popular first
    index: pd.Series  # item id -> dense index

    @classmethod
    def of(cls, ranking: pd.Series) -> ItemSpace:
        item_ids = ranking.index.to_numpy(dtype=np.int64)
        return cls(item_ids, pd.Series(np.arange(len(item_ids)), index=item_ids))

    def matrix(self, events: pd.DataFrame, rows: pd.Series, weights: np.ndarray | None = None) -> sp.csr_matrix:
        """``rows`` x items matrix of ``events`` (items outside the space are dropped); repeats add up."""
        columns = events["item_id"].map(self.index)
        known = columns.notna().to_numpy()
        values = np.ones(known.sum(), dtype=np.float32) if weights is None else weights[known].astype(np.float32)
        row_index = events["user_id"].map(rows).to_numpy()[known]
        return sp.csr_matrix((values, (row_index, columns.to_numpy()[known].astype(np.int64))), shape=(len(rows), len(self.item_ids)))


def bought_matrix(training: pd.DataFrame, space: ItemSpace) -> sp.csr_matrix:
    """Binary training-users x items matrix."""
    pairs = training.drop_duplicates(["user_id", "item_id"])
    buyers = pd.Series(np.arange(pairs["user_id"].nunique()), index=np.sort(pairs["user_id"].unique()))
    matrix = space.matrix(pairs, buyers)
    matrix.data[:] = 1.0
    return matrix


def history_matrix(inputs: BaselineInputs, space: ItemSpace, half_life_days: float) -> sp.csr_matrix:
    """Users x items, each purchase weighted 0.5 ** (age / half-life): tastes drift, so a
    purchase last week says more about the next one than a purchase half a year ago."""
    histories = inputs.histories[inputs.histories["user_id"].isin(inputs.users)]
    age_days = (inputs.history_end - histories["ts"]).dt.total_seconds().to_numpy() / 86_400
    rows = pd.Series(np.arange(len(inputs.users)), index=inputs.users)
    return space.matrix(histories, rows, np.power(0.5, age_days / half_life_days))


def item_to_item_similarity(bought: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Cosine similarity of items' buyer sets (co-purchases / sqrt(buyers_i * buyers_j)),
    each item keeping only its ``neighbours`` most similar items: the tail is mostly
    one-off co-purchases, noise that adds up over a long history."""
    degree = np.asarray(bought.sum(axis=0)).ravel()
    scale = sp.diags(1 / np.sqrt(np.maximum(degree, 1)))
    similarity = (scale @ (bought.T @ bought) @ scale).tocsr()
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return keep_top_per_row(similarity, neighbours)


def keep_top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    rows, columns, values = [], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        best = np.argsort(-matrix.data[start:end], kind="stable")[:k]
        rows.append(np.full(len(best), row))
        columns.append(matrix.indices[start:end][best])
        values.append(matrix.data[start:end][best])
    return sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))), shape=matrix.shape)


def ease_weights(bought: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE (Steck 2019): the item x item B minimising ||X - XB||^2 + l2 ||B||^2 with a zero
    diagonal, in closed form: P = (X'X + l2 I)^-1, B = -P / diag(P), diag(B) = 0."""
    gram = (bought.T @ bought).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def rank_by_scores(scores: np.ndarray, users: np.ndarray, space: ItemSpace, n: int) -> pd.DataFrame:
    """Top ``n`` items per row of a users x items score block. Items are ordered by score,
    then by popularity (the space is ordered most popular first), so popular items fill the
    slots of users with fewer than ``n`` scored items."""
    n = min(n, scores.shape[1])
    # Negative scores (EASE has them) rank like unscored items: after every positive score.
    positive = np.where(scores > 0, scores, 0.0)
    # A stable sort of -score keeps the popularity order among equal scores (and among zeros).
    order = np.argsort(-positive, axis=1, kind="stable")[:, :n]
    return pd.DataFrame(
        {
            "user_id": np.repeat(users, n),
            "rank": np.tile(np.arange(1, n + 1, dtype=np.int32), len(users)),
            "item_id": space.item_ids[order].ravel(),
            "score": np.take_along_axis(positive, order, axis=1).ravel().astype(np.float64),
        }
    )


def score_users(inputs: BaselineInputs, space: ItemSpace, item_weights, n: int, half_life_days: float) -> pd.DataFrame:
    """Score = recency-weighted history x item-item weights, ranked, block by block of users."""
    history = history_matrix(inputs, space, half_life_days)
    blocks = []
    # At least one (possibly empty) block, so that no users still give a frame with the columns.
    for start in range(0, max(len(inputs.users), 1), USER_BLOCK):
        block = history[start : start + USER_BLOCK] @ item_weights
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        blocks.append(rank_by_scores(block, inputs.users[start : start + USER_BLOCK], space, n))
    return pd.concat(blocks, ignore_index=True)


@dataclass(frozen=True)
class ItemModels:
    """What the popularity and item-to-item baselines learn from the training purchases alone:
    fitted once, it ranks items for any users' histories (the product's candidate pool fits it once
    over every purchase, instead of in every shard)."""

    popularity: pd.Series  # distinct buyers per item, most popular first
    similarity: sp.csr_matrix  # item-to-item cosine over ItemSpace.of(popularity), top neighbours per item

    @property
    def space(self) -> ItemSpace:
        return ItemSpace.of(self.popularity)


def fit_item_models(training: pd.DataFrame, neighbours: int) -> ItemModels:
    """From ``user_id, item_id`` purchases (repeats and timestamps change nothing here)."""
    ranking = popularity(training)
    return ItemModels(ranking, item_to_item_similarity(bought_matrix(training, ItemSpace.of(ranking)), neighbours))


def item_to_item(inputs: BaselineInputs, n: int, neighbours: int, half_life_days: float) -> pd.DataFrame:
    """Items co-purchased with what the user bought (cosine item-item neighbourhoods)."""
    models = fit_item_models(inputs.training, neighbours)
    return score_users(inputs, models.space, models.similarity, n, half_life_days)


def ease(inputs: BaselineInputs, n: int, l2: float, max_items: int, half_life_days: float) -> pd.DataFrame:
    """EASE on the ``max_items`` most popular training items (the inverse is items^2 memory
    and items^3 time, so the catalog tail is left out; it is rarely bought anyway)."""
    space = ItemSpace.of(popularity(inputs.training).head(max_items))
    weights = ease_weights(bought_matrix(inputs.training, space), l2)
    return score_users(inputs, space, weights, n, half_life_days)

"""Repeat-aware baselines: the user's own purchase frequency, and TIFU-KNN (Hu et al. 2020),
the next-basket recommender built on it. Pure pandas / numpy / scipy, same inputs and rules
as ``baselines.py``: fitted on ``training``, ranking from each user's ``histories``.

Both score the user's own history, so their item space also holds items the user bought
after the training cut-off (a history may be newer than the training data): those are
ranked after every training item when it comes to filling with popularity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from recsys_assets.evaluation.baselines import USER_BLOCK, BaselineInputs, ItemSpace, popularity, rank_by_scores, score_users


def history_item_space(inputs: BaselineInputs, ranking: pd.Series | None = None) -> ItemSpace:
    """Training items by popularity (``ranking``, when already known), then the items only the histories hold (by id)."""
    ranking = popularity(inputs.training) if ranking is None else ranking
    history_only = np.setdiff1d(inputs.histories["item_id"].unique(), ranking.index.to_numpy())
    return ItemSpace.of(pd.concat([ranking, pd.Series(0, index=np.sort(history_only))]))


def own_frequency(inputs: BaselineInputs, n: int, half_life_days: float | None, ranking: pd.Series | None = None) -> pd.DataFrame:
    """What the user bought most often, each purchase weighted 0.5 ** (age / half-life)
    (plain counts when ``half_life_days`` is None); ties and the rest of the list by
    popularity (``ranking``: the training popularity, when fitted already)."""
    space = history_item_space(inputs, ranking)
    half_life = np.inf if half_life_days is None else half_life_days  # 0.5 ** 0 = 1 for every purchase
    identity = sp.identity(len(space.item_ids), dtype=np.float32, format="csr")
    return score_users(inputs, space, identity, n, half_life)


def tifu_vectors(events: pd.DataFrame, users: np.ndarray, space: ItemSpace, group_size: int, within_decay: float, group_decay: float) -> sp.csr_matrix:
    """TIFU user vectors (``users`` x items). A basket is a user's items of one day. Counted
    back from the newest basket, baskets form groups of ``group_size`` (the oldest group may
    be smaller); a basket's items get within_decay ** (its place from its group's newest) /
    group's size, times group_decay ** (the group's place from the newest group) / groups:
    the paper's g_i = 1/m sum_j r_b^(m-j) b_ij and u = 1/k sum_i r_g^(k-i) g_i."""
    events = events[events["user_id"].isin(users)]
    baskets = events.assign(day=events["ts"].dt.floor("D")).drop_duplicates(["user_id", "day", "item_id"])
    days = baskets[["user_id", "day"]].drop_duplicates()
    newest_first = (days.groupby("user_id")["day"].rank(method="first", ascending=False) - 1).astype(np.int64)
    days = days.assign(group=newest_first // group_size, place=newest_first % group_size)
    days["group_days"] = days.groupby(["user_id", "group"])["day"].transform("size")
    days["groups"] = days.groupby("user_id")["group"].transform("max") + 1
    days["weight"] = np.power(within_decay, days["place"]) / days["group_days"] * np.power(group_decay, days["group"]) / days["groups"]
    weighted = baskets.merge(days[["user_id", "day", "weight"]], on=["user_id", "day"], how="left")
    rows = pd.Series(np.arange(len(users)), index=users)
    return space.matrix(weighted, rows, weighted["weight"].to_numpy())


def neighbour_means(queries: sp.csr_matrix, query_users: np.ndarray, pool: sp.csr_matrix, pool_users: np.ndarray, k: int) -> np.ndarray:
    """Per query row, the sum of the ``pool`` vectors of its ``k`` most cosine-similar pool
    users, divided by k (the paper's mean). The user's own training vector is left out (the
    own part of the score holds it), and so are neighbours with no item in common."""
    similarity = (normalize(queries) @ normalize(pool).T).toarray()
    same_user = query_users[:, None] == pool_users[None, :]
    similarity[same_user] = 0.0
    k = min(k, similarity.shape[1])
    if k == 0:
        return np.zeros((queries.shape[0], pool.shape[1]), dtype=np.float32)
    # argpartition then a stable sort of the chosen: the k best in a fixed order, ties by pool index.
    chosen = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.take_along_axis(similarity, chosen, axis=1) > 0
    rows = np.repeat(np.arange(len(query_users)), k)
    selection = sp.csr_matrix((weights.ravel().astype(np.float32) / k, (rows, chosen.ravel())), shape=similarity.shape)
    return (selection @ pool).toarray()


def tifu_knn(
    inputs: BaselineInputs, n: int, neighbours: int, group_size: int, within_decay: float, group_decay: float, alpha: float
) -> pd.DataFrame:
    """TIFU-KNN: alpha * the user's own TIFU vector (from the history) + (1 - alpha) * the mean
    TIFU vector of its ``neighbours`` nearest training users (fitted on the training
    purchases), ranked; popularity fills the rest."""
    space = history_item_space(inputs)
    vectors = dict(group_size=group_size, within_decay=within_decay, group_decay=group_decay)
    pool_users = np.sort(inputs.training["user_id"].unique())
    pool = tifu_vectors(inputs.training, pool_users, space, **vectors)
    own = tifu_vectors(inputs.histories, inputs.users, space, **vectors)
    blocks = []
    # At least one (possibly empty) block, so that no users still give a frame with the columns.
    for start in range(0, max(len(inputs.users), 1), USER_BLOCK):
        users = inputs.users[start : start + USER_BLOCK]
        own_block = own[start : start + USER_BLOCK]
        scores = alpha * own_block.toarray() + (1 - alpha) * neighbour_means(own_block, users, pool, pool_users, neighbours)
        blocks.append(rank_by_scores(scores, users, space, n))
    return pd.concat(blocks, ignore_index=True)

"""Implicit ALS (Hu, Koren & Volinsky 2008) with the ``implicit`` package's CPU solver.

Fitted on the training users x items matrix whose confidence is the recency-weighted
purchase count (each purchase 0.5 ** (age at the training cut-off / half-life), times
``alpha``); a user is scored by solving its factors from the history (weighted the same
way at the start of the evaluated period) against the fitted item factors, so a user the
training data never saw is scored too. Scores are factor dot products; like EASE's
negative scores, a non-positive one ranks after every positive one, by popularity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys_assets.evaluation.baselines import USER_BLOCK, BaselineInputs, ItemSpace, history_matrix, popularity, rank_by_scores


@dataclass(frozen=True)
class IalsSettings:
    factors: int
    regularization: float
    alpha: float
    iterations: int
    half_life_days: float
    seed: int


def training_confidence(inputs: BaselineInputs, space: ItemSpace, half_life_days: float):
    """Training users x items, each purchase weighted 0.5 ** (age at the cut-off / half-life)."""
    users = np.sort(inputs.training["user_id"].unique())
    age_days = (inputs.training_end - inputs.training["ts"]).dt.total_seconds().to_numpy() / 86_400
    return space.matrix(inputs.training, pd.Series(np.arange(len(users)), index=users), np.power(0.5, age_days / half_life_days))


def fitted_model(inputs: BaselineInputs, space: ItemSpace, settings: IalsSettings) -> AlternatingLeastSquares:
    # implicit parallelises over users itself; a multi-threaded BLAS under it only oversubscribes the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=settings.factors,
            regularization=settings.regularization,
            alpha=settings.alpha,
            iterations=settings.iterations,
            random_state=settings.seed,
        )
        model.fit(training_confidence(inputs, space, settings.half_life_days), show_progress=False)
    return model


def ials(inputs: BaselineInputs, n: int, settings: IalsSettings) -> pd.DataFrame:
    space = ItemSpace.of(popularity(inputs.training))
    model = fitted_model(inputs, space, settings)
    history = history_matrix(inputs, space, settings.half_life_days)
    blocks = []
    # At least one (possibly empty) block, so that no users still give a frame with the columns.
    for start in range(0, max(len(inputs.users), 1), USER_BLOCK):
        users = inputs.users[start : start + USER_BLOCK]
        rows = history[start : start + USER_BLOCK]
        with threadpool_limits(1, "blas"):
            factors = model.recalculate_user(np.arange(rows.shape[0]), rows.tocsr())
        scores = factors @ model.item_factors.T
        scores[np.diff(rows.indptr) == 0] = 0.0  # no history, no factors: the popular items
        blocks.append(rank_by_scores(scores, users, space, n))
    return pd.concat(blocks, ignore_index=True)

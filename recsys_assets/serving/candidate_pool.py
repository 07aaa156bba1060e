"""The candidate pool the LLM ranks beside what it generated: pure pandas, no Dagster.

Each source is one of the evaluation's baseline recommenders (``BASELINE_RECOMMENDERS``), fitted
on what the caller hands in: purchases before the test cut-off for the evaluation, every
purchase for the product. Its popularity fill (score 0) is left out: the popularity sources
bring popular items under their own name, so ``source`` says truly where an item came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from recsys_assets.evaluation.baseline_assets import BASELINE_RECOMMENDERS
from recsys_assets.evaluation.baselines import BaselineInputs, baseline_inputs

POOL_COLUMNS = ["user_id", "item_id", "source"]


def check_sources(sources: Sequence[str]) -> None:
    unknown = [s for s in sources if s not in BASELINE_RECOMMENDERS]
    if unknown:
        raise ValueError(f"Unknown candidate pool source(s) {', '.join(unknown)}; choose from {', '.join(BASELINE_RECOMMENDERS)}")


FILL_SOURCE = "global_popularity"


def candidate_pool(
    inputs: BaselineInputs, sources: Sequence[str], per_source: int, fill_to: int = 0, excluded: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``user_id, item_id, source``: up to ``per_source`` items per user from each source, in the
    order of ``sources`` and then of each source's ranking (the generate job keeps an item's first source).

    ``fill_to``: users whose pool holds fewer distinct items than this (leaving out the ``excluded``
    user_id, item_id pairs, the items the repeat policy never serves) get the next most popular items
    until it does, so the likelihood ranking can always fill a list of that length. Topping up only
    the short pools costs a few scored items per user, where a bigger ``per_source`` costs many.
    """
    check_sources(sources)
    frames = []
    for order, source in enumerate(sources):
        ranked = BASELINE_RECOMMENDERS[source](inputs, per_source)
        frames.append(ranked[ranked["score"] > 0].assign(source=source, order=order))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "source" else "object") for c in POOL_COLUMNS})
    pool = pd.concat(frames, ignore_index=True).sort_values(["user_id", "order", "rank"], kind="stable")
    pool = pool[POOL_COLUMNS].drop_duplicates(["user_id", "item_id"])
    if fill_to:
        pool = pd.concat([pool, popularity_fill(inputs, pool, fill_to, excluded)], ignore_index=True)
    return pool.reset_index(drop=True)


def popularity_fill(inputs: BaselineInputs, pool: pd.DataFrame, fill_to: int, excluded: pd.DataFrame | None) -> pd.DataFrame:
    """The most popular items each user's ``pool`` lacks, as many as bring it to ``fill_to`` servable items."""
    servable = pool if excluded is None else pool.merge(excluded[["user_id", "item_id"]], how="left", indicator=True)
    if excluded is not None:
        servable = servable[servable["_merge"] == "left_only"]
    short = (fill_to - servable.groupby("user_id").size().reindex(inputs.users, fill_value=0)).clip(lower=0)
    short = short[short > 0]
    if short.empty:
        return pool.head(0)
    # Enough popular items for the shortest pool, whatever it already holds or may not be served.
    most_excluded = int(excluded.groupby("user_id").size().max()) if excluded is not None and len(excluded) else 0
    popular = BASELINE_RECOMMENDERS[FILL_SOURCE](inputs, fill_to + per_user_max(pool) + most_excluded)
    candidates = popular[popular["user_id"].isin(short.index)][["user_id", "item_id", "rank"]]
    taken = pd.concat([pool[["user_id", "item_id"]], excluded[["user_id", "item_id"]] if excluded is not None else None])
    candidates = candidates.merge(taken.drop_duplicates(), how="left", indicator=True)
    candidates = candidates[candidates["_merge"] == "left_only"].sort_values(["user_id", "rank"], kind="stable")
    candidates = candidates[candidates.groupby("user_id").cumcount() < candidates["user_id"].map(short)]
    return candidates.assign(source=FILL_SOURCE)[POOL_COLUMNS]


def per_user_max(pool: pd.DataFrame) -> int:
    return int(pool.groupby("user_id").size().max()) if len(pool) else 0


def serving_inputs(purchases: pd.DataFrame, user_ids) -> BaselineInputs:
    """What the product's pool is fitted on: every purchase so far, for ``user_ids``."""
    end = purchases["ts"].max() + pd.Timedelta(seconds=1) if len(purchases) else pd.Timestamp.now()
    return baseline_inputs(purchases, user_ids, end, end)

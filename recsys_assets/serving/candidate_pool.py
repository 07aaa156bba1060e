"""The candidate pool the LLM ranks beside what it generated: pure pandas, no Dagster.

Each source is one of the evaluation's baseline recommenders at its asset's default settings,
split into what it learns from everyone's purchases (``ItemModels``: item popularity and
item-to-item neighbourhoods, fitted once) and what it reads of the user (their own history).
The evaluation fits the item models on purchases before the test cut-off; the product fits
them once per data version over every purchase (llm_data/pool_item_models), so a shard reads
only its own users' purchases, whatever the size of the marketplace. Popularity fill (score
0) is left out: the popularity source brings popular items under its own name, so ``source``
says truly where an item came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import scipy.sparse as sp

from recsys_assets.evaluation import baselines, baselines_repeat
from recsys_assets.evaluation.baseline_assets import ItemToItemConfig, OwnFrequencyConfig
from recsys_assets.evaluation.baselines import BaselineInputs, ItemModels

POOL_COLUMNS = ["user_id", "item_id", "source"]
POOL_NEIGHBOURS = ItemToItemConfig().neighbours

# Each gives what the baseline of the same name gives at its default settings, from fitted item models.
PoolSource = Callable[[ItemModels, BaselineInputs, int], pd.DataFrame]
POOL_SOURCES: dict[str, PoolSource] = {
    "own_frequency": lambda models, inputs, n: baselines_repeat.own_frequency(
        inputs, n, OwnFrequencyConfig().half_life_days, models.popularity
    ),
    "item_to_item": lambda models, inputs, n: baselines.score_users(
        inputs, models.space, models.similarity, n, ItemToItemConfig().half_life_days
    ),
    "global_popularity": lambda models, inputs, n: baselines.same_list_for_everyone(models.popularity, inputs.users, n),
}
FILL_SOURCE = "global_popularity"


def check_sources(sources: Sequence[str]) -> None:
    unknown = [s for s in sources if s not in POOL_SOURCES]
    if unknown:
        raise ValueError(
            f"Unknown candidate pool source(s) {', '.join(unknown)}; choose from {', '.join(POOL_SOURCES)} "
            "(the baselines whose item-level model is fitted once, so shards need not read every purchase)"
        )


def candidate_pool(
    models: ItemModels,
    inputs: BaselineInputs,
    sources: Sequence[str],
    per_source: int,
    fill_to: int = 0,
    excluded: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``user_id, item_id, source``: up to ``per_source`` items per user of ``inputs.users`` (from their
    ``inputs.histories``) from each source, in the order of ``sources`` and then of each source's
    ranking (the generate job keeps an item's first source).

    ``fill_to``: users whose pool holds fewer distinct items than this (leaving out the ``excluded``
    user_id, item_id pairs, the items the repeat policy never serves) get the next most popular items
    until it does, so the likelihood ranking can always fill a list of that length. Topping up only
    the short pools costs a few scored items per user, where a bigger ``per_source`` costs many.
    """
    check_sources(sources)
    frames = []
    for order, source in enumerate(sources):
        ranked = POOL_SOURCES[source](models, inputs, per_source)
        frames.append(ranked[ranked["score"] > 0].assign(source=source, order=order))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "source" else "object") for c in POOL_COLUMNS})
    pool = pd.concat(frames, ignore_index=True).sort_values(["user_id", "order", "rank"], kind="stable")
    pool = pool[POOL_COLUMNS].drop_duplicates(["user_id", "item_id"])
    if fill_to:
        pool = pd.concat([pool, popularity_fill(models, inputs, pool, fill_to, excluded)], ignore_index=True)
    return pool.reset_index(drop=True)


def popularity_fill(
    models: ItemModels, inputs: BaselineInputs, pool: pd.DataFrame, fill_to: int, excluded: pd.DataFrame | None
) -> pd.DataFrame:
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
    popular = POOL_SOURCES[FILL_SOURCE](models, inputs, fill_to + per_user_max(pool) + most_excluded)
    candidates = popular[popular["user_id"].isin(short.index)][["user_id", "item_id", "rank"]]
    taken = pd.concat([pool[["user_id", "item_id"]], excluded[["user_id", "item_id"]] if excluded is not None else None])
    candidates = candidates.merge(taken.drop_duplicates(), how="left", indicator=True)
    candidates = candidates[candidates["_merge"] == "left_only"].sort_values(["user_id", "rank"], kind="stable")
    candidates = candidates[candidates.groupby("user_id").cumcount() < candidates["user_id"].map(short)]
    return candidates.assign(source=FILL_SOURCE)[POOL_COLUMNS]


def per_user_max(pool: pd.DataFrame) -> int:
    return int(pool.groupby("user_id").size().max()) if len(pool) else 0


def serving_inputs(purchases: pd.DataFrame, user_ids) -> BaselineInputs:
    """What the product's pool reads of ``user_ids``: their every purchase so far (the item models
    were fitted on everyone's)."""
    end = purchases["ts"].max() + pd.Timedelta(seconds=1) if len(purchases) else pd.Timestamp.now()
    return baselines.baseline_inputs(purchases, user_ids, end, end)


def fit_pool_item_models(training: pd.DataFrame) -> ItemModels:
    return baselines.fit_item_models(training, POOL_NEIGHBOURS)


def save_item_models(models: ItemModels, folder: Path) -> None:
    """Popularity as Parquet (item_id, buyers, in rank order); the neighbourhoods as a sparse matrix over that order."""
    models.popularity.rename("buyers").rename_axis("item_id").reset_index().to_parquet(folder / "popularity.parquet", index=False)
    sp.save_npz(folder / "item_to_item.npz", models.similarity)


def load_item_models(folder: Path) -> ItemModels:
    ranking = pd.read_parquet(folder / "popularity.parquet")
    return ItemModels(ranking.set_index("item_id")["buyers"], sp.load_npz(folder / "item_to_item.npz").tocsr())

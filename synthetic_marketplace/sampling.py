"""Samplers shared by every shape of the synthetic marketplace: taste-driven shopping
sessions, items by category and price level (Zipf popularity), and co-purchase bundles."""

from __future__ import annotations

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400


def sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a probability matrix."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random(len(probabilities))[:, None]
    return np.minimum((draws > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def item_choice_tables(spec, items: pd.DataFrame):
    """For every (category, price level): candidate items and their choice probabilities."""
    zipf_rank = items.groupby("category_index").cumcount().to_numpy() + 1
    popularity = 1.0 / zipf_rank**1.1
    tables = {}
    for category, frame in items.groupby("category_index"):
        index = frame.index.to_numpy()
        for level in range(spec.price_levels):
            affinity = np.exp(-1.2 * np.abs(frame["price_level"].to_numpy() - level))
            weights = popularity[index] * affinity
            tables[(category, level)] = (index, weights / weights.sum())
    return tables


def sample_items(rng, spec, items, categories: np.ndarray, levels: np.ndarray) -> np.ndarray:
    tables = item_choice_tables(spec, items)
    chosen = np.empty(len(categories), dtype=np.int64)
    keys = categories * spec.price_levels + levels
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        index, probabilities = tables[(key // spec.price_levels, key % spec.price_levels)]
        chosen[rows] = rng.choice(index, size=len(rows), p=probabilities)
    return chosen


def sessions(rng, spec, personas, persona_a, persona_b, per_user_rate):
    """Shopping sessions: (user, second since start, category, price level)."""
    counts = rng.poisson(per_user_rate)
    user = np.repeat(np.arange(spec.users), counts)
    seconds = rng.random(len(user)) * spec.days * SECONDS_PER_DAY
    drift = seconds / (spec.days * SECONDS_PER_DAY)
    persona = np.where(rng.random(len(user)) < drift, persona_b[user], persona_a[user])
    slot = sample_rows(rng, personas["weights"][persona])
    category = personas["categories"][persona, slot]
    # Price level: the persona's level, nudged by one step now and then.
    level = np.clip(personas["price_level"][persona] + rng.choice([-1, 0, 0, 0, 1], size=len(user)), 0, spec.price_levels - 1)
    return user, seconds, category, level


def with_bundles(
    rng, spec, purchases: pd.DataFrame, item_group, item_members, probability: float, delay_seconds: tuple[float, float]
) -> pd.DataFrame:
    """``purchases`` plus, for a share ``probability`` of them, a co-purchase of a group mate
    bought ``delay_seconds`` later (hours for an accessory in the same order, weeks for a
    complement bought after the main item); sorted by time."""
    user, item, seconds = (purchases[c].to_numpy() for c in ("user", "item", "seconds"))
    bundled = np.flatnonzero(rng.random(len(item)) < probability)
    group_sizes = np.array([len(item_members[g]) for g in item_group[item[bundled]]])
    has_mate = group_sizes > 1
    bundled, group_sizes = bundled[has_mate], group_sizes[has_mate]
    mates = np.array(
        [item_members[item_group[item[b]]][k] for b, k in zip(bundled, (rng.random(len(bundled)) * group_sizes).astype(int))],
        dtype=np.int64,
    )
    keep = mates != item[bundled]
    extra = pd.DataFrame(
        {
            "user": user[bundled][keep],
            "item": mates[keep],
            "seconds": np.minimum(seconds[bundled][keep] + rng.uniform(*delay_seconds, keep.sum()), spec.days * SECONDS_PER_DAY - 1),
        }
    )
    return pd.concat([purchases, extra], ignore_index=True).sort_values("seconds", kind="stable").reset_index(drop=True)

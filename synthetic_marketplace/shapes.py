"""Shapes of the synthetic marketplace besides the default: how often users buy an item again.

- **grocery**: repeat purchases dominate. Every user has a few *staples* (items of their
  persona's categories) bought every 1-3 weeks, skipped now and then; a user who drifts to a
  second persona swaps half of them for staples of the new taste at some point of the period.
  A smaller share of purchases explores (taste-driven sessions as in the default shape).
  Purchases happen on *trips* every 3-7 days, so a basket holds a few items.
- **durable**: repeat purchases are rare. Purchases are infrequent, a user almost never buys
  the same item twice, and many purchases pull in a complement of the item's co-purchase
  group days to weeks later (the case after the phone), so co-purchase structure and
  category tastes are what predicts the next purchase.

Every shape shares the default's items, personas, users, drift, wishlist/cart funnels and
ids; only the purchases differ. Each function returns the purchases (user, item, seconds
since the start, as indexes) and extra truth tables keyed by name (indexes, not ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthetic_marketplace.sampling import SECONDS_PER_DAY, sample_items, sample_rows, sessions, with_bundles

SHAPES = ("default", "grocery", "durable")


@dataclass(frozen=True)
class GroceryShape:
    staples: tuple[int, int] = (2, 7)  # per user, more for more active users
    staple_period_days: tuple[float, float] = (7.0, 21.0)
    skip_probability: float = 0.15
    trip_interval_days: tuple[float, float] = (3.0, 7.0)
    exploration_per_day: float = 0.1
    drifted_staples: float = 0.5  # share of a drifting user's staples replaced by the new taste's


@dataclass(frozen=True)
class DurableShape:
    purchase_scale: float = 0.45  # of the spec's purchases per user
    complement_probability: float = 0.5
    complement_delay_days: tuple[float, float] = (0.02, 30.0)
    repeat_probability: float = 0.02  # a second purchase of the same item that still happens


GROCERY, DURABLE = GroceryShape(), DurableShape()


def grocery_purchases(rng, spec, items, item_group, item_members, personas, persona_a, persona_b, activity):
    period = spec.days * SECONDS_PER_DAY
    staples = _staples(rng, spec, items, personas, persona_a, persona_b, activity / activity.mean())
    due = _staple_due_times(rng, staples)
    rate = GROCERY.exploration_per_day * spec.days * activity / activity.mean()
    user, seconds, category, level = sessions(rng, spec, personas, persona_a, persona_b, rate)
    explored = pd.DataFrame({"user": user, "item": sample_items(rng, spec, items, category, level), "seconds": seconds})
    wanted = pd.concat([due, explored], ignore_index=True)
    wanted["seconds"] = _next_trip(rng, spec, wanted["user"].to_numpy(), wanted["seconds"].to_numpy())
    purchases = wanted[(wanted["seconds"] >= 0) & (wanted["seconds"] < period)]
    return purchases.sort_values("seconds", kind="stable").reset_index(drop=True), {"staples": _staples_truth(staples)}


def _staples_truth(staples: pd.DataFrame) -> pd.DataFrame:
    """Each staple with its period and the days (from the start, end exclusive) it is bought."""
    return pd.DataFrame(
        {
            "user": staples["user"],
            "item": staples["item"],
            "period_days": (staples["period"] / SECONDS_PER_DAY).round(2),
            "from_day": (staples["start"] // SECONDS_PER_DAY).astype(int),
            "to_day": np.ceil(staples["end"] / SECONDS_PER_DAY).astype(int),
        }
    )


def _staples(rng, spec, items, personas, persona_a, persona_b, relative_activity) -> pd.DataFrame:
    """Each user's staples: (user, item, period, active start and end in seconds)."""
    low, high = GROCERY.staples
    counts = np.clip(np.rint(relative_activity * (low + high) / 2), low, high).astype(int)
    user = np.repeat(np.arange(spec.users), counts)
    staples = _taste_items(rng, spec, items, personas, persona_a[user], user)
    staples["start"], staples["end"] = 0.0, float(spec.days * SECONDS_PER_DAY)
    drifting = persona_a[user] != persona_b[user]
    swapped = staples[drifting & (rng.random(len(staples)) < GROCERY.drifted_staples)]
    switch = rng.uniform(0.2, 0.8, len(swapped)) * spec.days * SECONDS_PER_DAY
    staples.loc[swapped.index, "end"] = switch
    replacement = _taste_items(rng, spec, items, personas, persona_b[swapped["user"].to_numpy()], swapped["user"].to_numpy())
    replacement["start"], replacement["end"] = switch, float(spec.days * SECONDS_PER_DAY)
    staples = pd.concat([staples, replacement], ignore_index=True).drop_duplicates(["user", "item"]).reset_index(drop=True)
    staples["period"] = rng.uniform(*GROCERY.staple_period_days, len(staples)) * SECONDS_PER_DAY
    return staples


def _taste_items(rng, spec, items, personas, persona: np.ndarray, user: np.ndarray) -> pd.DataFrame:
    """One item per row, from the persona's categories and near its price level."""
    category = personas["categories"][persona, sample_rows(rng, personas["weights"][persona])]
    level = np.clip(personas["price_level"][persona] + rng.choice([-1, 0, 0, 0, 1], size=len(persona)), 0, spec.price_levels - 1)
    return pd.DataFrame({"user": user, "item": sample_items(rng, spec, items, category, level)})


def _staple_due_times(rng, staples: pd.DataFrame) -> pd.DataFrame:
    """Every time a staple runs out while it is active: every period from a random phase,
    with a little jitter, skipped now and then (bought elsewhere, still in stock)."""
    start, end, period = (staples[c].to_numpy() for c in ("start", "end", "period"))
    phase = start + rng.random(len(staples)) * period
    occurrences = np.maximum(np.floor((end - phase) / period).astype(int) + 1, 0)
    row = np.repeat(np.arange(len(staples)), occurrences)
    k = np.arange(len(row)) - np.repeat(np.cumsum(occurrences) - occurrences, occurrences)
    seconds = phase[row] + k * period[row] + rng.normal(0, 0.1, len(row)) * period[row]
    kept = (rng.random(len(row)) >= GROCERY.skip_probability) & (seconds < end[row])
    user, item = staples["user"].to_numpy()[row], staples["item"].to_numpy()[row]
    return pd.DataFrame({"user": user[kept], "item": item[kept], "seconds": seconds[kept]})


def _next_trip(rng, spec, user: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """The time of the user's first shopping trip at or after ``seconds``: every user shops
    every few days at about the same hour; items of one trip are a few minutes apart."""
    interval = rng.uniform(*GROCERY.trip_interval_days, spec.users) * SECONDS_PER_DAY
    offset = rng.random(spec.users) * interval
    trip = np.ceil((seconds - offset[user]) / interval[user])
    return offset[user] + trip * interval[user] + rng.uniform(0, 1200, len(user))


def durable_purchases(rng, spec, items, item_group, item_members, personas, persona_a, persona_b, activity):
    shape = DURABLE
    expected_sessions = shape.purchase_scale * activity / (1 + shape.complement_probability)
    user, seconds, category, level = sessions(rng, spec, personas, persona_a, persona_b, expected_sessions)
    purchases = pd.DataFrame({"user": user, "item": sample_items(rng, spec, items, category, level), "seconds": seconds})
    delay = tuple(d * SECONDS_PER_DAY for d in shape.complement_delay_days)
    purchases = with_bundles(rng, spec, purchases, item_group, item_members, shape.complement_probability, delay)
    again = purchases.duplicated(["user", "item"]).to_numpy()
    kept = ~again | (rng.random(len(purchases)) < shape.repeat_probability)
    return purchases[kept].reset_index(drop=True), {}


def repeat_share(purchases: pd.DataFrame, days: int, test_days: int = 14) -> float:
    """Share of the (user, item) pairs bought in the last ``test_days`` that the user had
    bought before them (``purchases``: user_id, item_id, seconds since the start)."""
    cut = (days - test_days) * SECONDS_PER_DAY
    before = purchases[purchases["seconds"] < cut][["user_id", "item_id"]].drop_duplicates()
    test = purchases[purchases["seconds"] >= cut][["user_id", "item_id"]].drop_duplicates()
    if test.empty:
        return float("nan")
    return float(len(test.merge(before, on=["user_id", "item_id"])) / len(test))

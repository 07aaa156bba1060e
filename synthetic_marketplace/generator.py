"""A synthetic marketplace with structure a recommender can be measured against.

Planted structure (written to ``_truth/`` beside the landing tables so tests and benchmarks
can check that the platform recovers it; the platform itself never reads ``_truth/``):

- **Tastes.** Every user follows a *persona*: a few favourite categories and a preferred
  price level. Persona choice depends mildly on gender and age, so demographics carry
  signal for cold-start users.
- **Drift.** Every user drifts linearly from a first persona to a second one over the
  period, so recent purchases predict the next ones better than old ones.
- **Co-purchase groups.** Items come in small groups inside a category (phone, case,
  charger); a purchase pulls in other members of its group with some probability.
- **Popularity skew.** Within a category, item popularity is Zipf-distributed.
- **Wishlist and cart funnels.** Many purchases are wishlisted days before and put in the
  cart hours before; some carts and wishlists are abandoned (so current carts exist).

The *shape* (``MarketplaceSpec.shape``) sets how often users buy an item again: ``default``
(about a third of a period's purchases are repeats), ``grocery`` (staples bought every few
weeks dominate) or ``durable`` (almost never the same item twice); see ``shapes.py``.

Ids are opaque 7-9 digit integers drawn at random: not dense and not in order of
appearance, like real marketplace ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from synthetic_marketplace.sampling import SECONDS_PER_DAY, sample_items, sample_rows, sessions, with_bundles
from synthetic_marketplace.shapes import SHAPES, durable_purchases, grocery_purchases


@dataclass(frozen=True)
class MarketplaceSpec:
    users: int = 3_000
    items: int = 2_000
    days: int = 180
    end_date: date = date.today() - timedelta(days=1)
    seed: int = 42
    categories: int = 24
    personas: int = 12
    price_levels: int = 5
    purchases_per_user: float = 24.0
    group_size: tuple[int, int] = (2, 5)
    bundle_probability: float = 0.35
    wishlist_before_purchase: float = 0.3
    cart_before_purchase: float = 0.5
    # Wishlist/cart additions per user that are never bought (recent, following the user's
    # current taste): marketplace wishlists and carts hold many such items.
    open_intents_per_user: float = 8.0
    file_format: str = "parquet"
    shape: str = "default"  # one of shapes.SHAPES

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Unknown marketplace shape {self.shape!r}: choose one of {', '.join(SHAPES)}.")

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)


@dataclass
class Marketplace:
    users: pd.DataFrame
    items: pd.DataFrame
    purchases: pd.DataFrame
    wishlist: pd.DataFrame
    cart: pd.DataFrame
    truth_users: pd.DataFrame
    truth_items: pd.DataFrame
    truth_extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # a shape's own truth, e.g. grocery staples


def opaque_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct random ids of 7 to 9 digits, in random order."""
    digits = rng.integers(7, 10, size=n)
    low, high = 10 ** (digits - 1), 10**digits
    ids = np.unique(low + (rng.random(n) * (high - low)).astype(np.int64))
    while len(ids) < n:  # collisions are rare; top up until n distinct ids
        extra = rng.integers(1_000_000, 1_000_000_000, size=n - len(ids))
        ids = np.unique(np.concatenate([ids, extra]))
    return rng.permutation(ids[:n]).astype(np.int64)


def generate(spec: MarketplaceSpec) -> Marketplace:
    rng = np.random.default_rng(spec.seed)
    items, item_group, item_members = _items(rng, spec)
    personas = _personas(rng, spec)
    users, persona_a, persona_b, activity = _users(rng, spec, personas)
    shape_purchases = {"default": _purchases, "grocery": grocery_purchases, "durable": durable_purchases}[spec.shape]
    purchases, truth_extra = shape_purchases(rng, spec, items, item_group, item_members, personas, persona_a, persona_b, activity)
    wishlist, cart = _funnel_events(rng, spec, items, personas, persona_a, persona_b, purchases)

    user_ids = users["user_id"].to_numpy()
    item_ids = items["item_id"].to_numpy()
    purchases = _with_ids(purchases, user_ids, item_ids)
    purchases["price"] = np.round(items["price"].to_numpy()[purchases.pop("item")] * rng.uniform(0.9, 1.05, len(purchases)), 2)
    purchases["quantity"] = np.where(rng.random(len(purchases)) < 0.92, 1, rng.integers(2, 4, len(purchases))).astype(np.int32)
    wishlist = _with_ids(wishlist, user_ids, item_ids).drop(columns="item")
    cart = _with_ids(cart, user_ids, item_ids).drop(columns="item")

    truth_users = pd.DataFrame({"user_id": user_ids, "persona_start": persona_a, "persona_end": persona_b})
    truth_items = pd.DataFrame(
        {
            "item_id": item_ids,
            "group_id": item_group,
            "category_index": items["category_index"].to_numpy(),
            "price_level": items["price_level"].to_numpy(),
        }
    )
    return Marketplace(
        users=users,
        items=items.drop(columns=["category_index", "price_level"]),
        purchases=purchases[["user_id", "item_id", "seconds", "price", "quantity"]],
        wishlist=wishlist,
        cart=cart,
        truth_users=truth_users,
        truth_items=truth_items,
        truth_extra={name: _truth_with_ids(frame, user_ids, item_ids) for name, frame in truth_extra.items()},
    )


def _truth_with_ids(frame: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """A truth table keyed by user and item indexes, with the landing ids instead."""
    ids = {"user_id": user_ids[frame["user"].to_numpy()], "item_id": item_ids[frame["item"].to_numpy()]}
    return pd.DataFrame(ids).join(frame.drop(columns=["user", "item"]).reset_index(drop=True))


def _fill_empty_categories(rng: np.random.Generator, category_index: np.ndarray, categories: int) -> np.ndarray:
    """Move one item into every category the draw left empty (small catalogs): personas may
    favour any category, and their purchases need items there. Large catalogs are unchanged."""
    if len(category_index) < categories:
        raise ValueError(f"A marketplace of {len(category_index)} items cannot fill {categories} categories: use --items {categories} or more.")
    empty = np.setdiff1d(np.arange(categories), category_index)
    counts = np.bincount(category_index, minlength=categories)
    for category in empty:
        donor = rng.choice(np.flatnonzero(counts[category_index] > 1))  # an item whose category keeps others
        counts[category_index[donor]] -= 1
        category_index[donor], counts[category] = category, 1
    return category_index


def _items(rng: np.random.Generator, spec: MarketplaceSpec):
    n = spec.items
    category_ids = opaque_ids(rng, spec.categories) % 100_000  # short opaque category codes
    category_index = _fill_empty_categories(rng, rng.integers(0, spec.categories, size=n), spec.categories)
    price_level = rng.integers(0, spec.price_levels, size=n)
    category_base = rng.uniform(5, 80, size=spec.categories)
    price = np.round(category_base[category_index] * (2.0 ** price_level) * rng.lognormal(0, 0.15, n), 2)

    # Co-purchase groups: consecutive runs of items inside each category.
    order = np.lexsort((rng.random(n), category_index))
    item_group = np.empty(n, dtype=np.int64)
    group, position = 0, 0
    while position < n:
        size = int(rng.integers(spec.group_size[0], spec.group_size[1] + 1))
        run = order[position : position + size]
        same_category = category_index[run] == category_index[run[0]]
        run = run[same_category]
        item_group[run] = group
        group += 1
        position += len(run)
    members = pd.Series(np.arange(n)).groupby(item_group).apply(np.array)

    items = pd.DataFrame(
        {
            "item_id": opaque_ids(rng, n),
            "category_id": category_ids[category_index],
            "price": price,
            "category_index": category_index,
            "price_level": price_level,
        }
    )
    return items, item_group, members


def _personas(rng: np.random.Generator, spec: MarketplaceSpec) -> dict[str, np.ndarray]:
    """Each persona: 3 favourite categories with weights, and a preferred price level."""
    categories = np.stack([rng.choice(spec.categories, size=3, replace=False) for _ in range(spec.personas)])
    weights = np.sort(rng.dirichlet([4.0, 2.0, 1.0], size=spec.personas), axis=1)[:, ::-1]
    return {
        "categories": categories,
        "weights": weights,
        "price_level": rng.integers(0, spec.price_levels, size=spec.personas),
        # Demographic affinity: which gender and age band leans to each persona.
        "gender": rng.integers(0, 2, size=spec.personas),
        "age_center": rng.uniform(22, 65, size=spec.personas),
    }


def _users(rng: np.random.Generator, spec: MarketplaceSpec, personas):
    """Users with demographics, a start and an end persona, and an activity level."""
    n = spec.users
    gender = rng.integers(0, 2, size=n)
    age = np.clip(rng.normal(38, 12, size=n), 16, 85).astype(int)
    # Persona probability rises for matching gender and nearby age.
    affinity = (
        1.0
        + 1.5 * (gender[:, None] == personas["gender"][None, :])
        + 2.0 * np.exp(-(((age[:, None] - personas["age_center"][None, :]) / 10.0) ** 2))
    )
    probabilities = affinity / affinity.sum(axis=1, keepdims=True)
    persona_a = sample_rows(rng, probabilities)
    # Half the users keep their persona; the rest drift to another one.
    persona_b = np.where(rng.random(n) < 0.5, persona_a, sample_rows(rng, probabilities))
    activity = rng.lognormal(0.0, 0.6, size=n)
    activity *= spec.purchases_per_user / activity.mean()

    geo_codes = opaque_ids(rng, 60) % 1000
    # A few users did not fill in their profile: attributes are nullable in the contract.
    users = pd.DataFrame(
        {
            "user_id": opaque_ids(rng, n),
            "gender": pd.Series(gender, dtype="Int64").where(rng.random(n) >= 0.03),
            "age": pd.Series(age, dtype="Int64").where(rng.random(n) >= 0.05),
            "geo": pd.array(geo_codes[rng.zipf(1.6, size=n) % len(geo_codes)], dtype="Int64"),
        }
    )
    return users, persona_a, persona_b, activity


def _purchases(rng, spec, items, item_group, item_members, personas, persona_a, persona_b, activity) -> pd.DataFrame:
    """The default shape: taste-driven sessions, some pulling in a group mate within hours;
    no truth of its own beyond users and items."""
    expected_sessions = activity / (1 + spec.bundle_probability * 1.5)
    user, seconds, category, level = sessions(rng, spec, personas, persona_a, persona_b, expected_sessions)
    item = sample_items(rng, spec, items, category, level)
    purchases = pd.DataFrame({"user": user, "item": item, "seconds": seconds})
    return with_bundles(rng, spec, purchases, item_group, item_members, spec.bundle_probability, (60, 6 * 3600)), {}


def _funnel_events(rng, spec, items, personas, persona_a, persona_b, purchases: pd.DataFrame):
    """Wishlist and cart events: the ones leading to purchases, plus abandoned ones."""
    n = len(purchases)
    wished = rng.random(n) < spec.wishlist_before_purchase
    carted = rng.random(n) < spec.cart_before_purchase
    wishlist = pd.DataFrame(
        {
            "user": purchases["user"][wished],
            "item": purchases["item"][wished],
            "seconds": purchases["seconds"][wished] - rng.uniform(1, 20, wished.sum()) * SECONDS_PER_DAY,
        }
    )
    cart = pd.DataFrame(
        {
            "user": purchases["user"][carted],
            "item": purchases["item"][carted],
            "seconds": purchases["seconds"][carted] - rng.uniform(300, 12 * 3600, carted.sum()),
        }
    )
    # Never-bought intent follows the user's taste at the time it was added (drifting like
    # purchases), so a current cart or wishlist points to what the user is into now.
    rate = np.full(spec.users, spec.open_intents_per_user)
    user, seconds, category, level = sessions(rng, spec, personas, persona_a, persona_b, rate)
    abandoned = pd.DataFrame({"user": user, "item": sample_items(rng, spec, items, category, level), "seconds": seconds - 1})
    to_wishlist = rng.random(len(abandoned)) < 0.5
    wishlist = pd.concat([wishlist, abandoned[to_wishlist]], ignore_index=True)
    cart = pd.concat([cart, abandoned[~to_wishlist]], ignore_index=True)
    in_period = lambda frame: frame[frame["seconds"] >= 0].sort_values("seconds", kind="stable").reset_index(drop=True)  # noqa: E731
    return in_period(wishlist), in_period(cart)


def _with_ids(events: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": user_ids[events["user"].to_numpy()],
            "item_id": item_ids[events["item"].to_numpy()],
            "item": events["item"].to_numpy(),
            "seconds": events["seconds"].to_numpy(),
        }
    )

"""Offline ranking metrics against held-out purchases: pure pandas / numpy.

Inputs, in long format:

- ``recommendations``: ``user_id, rank, item_id`` (rank 1 = best). Only the order of the
  ranks matters; a repeated (user, item) counts once, at its best rank.
- ``held_out``: ``user_id, item_id, price``, one row per distinct item a user bought in the
  held-out period, ``price`` = what the user paid for it (``revenue`` uses it).

Who is evaluated: every user with at least one held-out purchase. A user without
recommendations counts with an empty list (zero hits); recommendations for users without
held-out purchases are ignored (their recall is undefined). Every per-user metric is the
mean over the evaluated users unless said otherwise.

Definitions at cut-off K (R = the user's top-K list, T = the user's held-out items, a hit
is an item in R and T):

- ``hit_rate``: share of users with at least one hit.
- ``precision``: hits / K (a list shorter than K is not rewarded for being short).
- ``recall``: hits / |T|.
- ``map``: average precision, sum over hits of (hits up to its rank / its rank), divided by
  min(|T|, K) so that a perfect list scores 1.
- ``ndcg``: sum over hits of 1 / log2(rank + 1), divided by the same sum for a list with
  its first min(|T|, K) items all hits.
- ``revenue``: mean per user of the price paid for the hit items.
- ``category_recall``: recall at category level, |categories(R) & categories(T)| / |categories(T)|
  (items without a category are left out; users with no categorised held-out item too).
- ``top_bias``: share of all recommended slots (over the evaluated users) holding one of
  the N most popular items of the training period. Lower means less popularity bias.
- ``novelty``: mean over recommended slots of -log2 p(item), p = the share of training
  users who bought the item (an item nobody bought counts as bought by one user, so that
  it stays finite); mean per user over users with a non-empty list.
- ``serendipity``: Ge et al. (2010) serendipity with popularity as the "obvious"
  recommender: hits that are not among the N most popular training items, divided by K.
  It rewards relevant recommendations a popularity list would not have made.
- ``coverage``: distinct catalog items recommended to the evaluated users / catalog size.
- ``valid_id_rate``: share of recommended slots whose id is in the catalog (an LLM can
  generate ids that do not exist).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

# Metrics whose value is better when lower; every other metric is better when higher.
LOWER_IS_BETTER = frozenset({"top_bias"})


@dataclass(frozen=True)
class TrainingStats:
    """What some metrics need to know about the training period and the catalog."""

    buyers: pd.Series  # item_id -> distinct training-period buyers
    training_users: int  # distinct buyers in the training period
    catalog: frozenset[int]  # ids that may be recommended
    categories: pd.Series  # item_id -> category (items without one absent or NA)
    top_n: int = 100  # "most popular" for top_bias and serendipity

    @cached_property
    def popular(self) -> frozenset[int]:
        """The top_n items by training buyers (ties broken by id, so the set is deterministic)."""
        ranked = sorted(self.buyers[self.buyers > 0].items(), key=lambda pair: (-pair[1], pair[0]))
        return frozenset(int(item) for item, _ in ranked[: self.top_n])


def training_stats(training: pd.DataFrame, items: pd.DataFrame, top_n: int) -> TrainingStats:
    """Stats from training purchases (``user_id, item_id``) and the catalog (``item_id, category_id``)."""
    buyers = training.groupby("item_id")["user_id"].nunique().rename("buyers")
    return TrainingStats(
        buyers=buyers,
        training_users=int(training["user_id"].nunique()),
        catalog=frozenset(items["item_id"].tolist()),
        categories=items.set_index("item_id")["category_id"].dropna(),
        top_n=top_n,
    )


@dataclass(frozen=True)
class Judged:
    """One recommender's top-K lists for the evaluated users, each slot marked hit or not."""

    slots: pd.DataFrame  # user_id, position (1..K), item_id, hit, price
    held_out: pd.DataFrame  # user_id, item_id, price
    users: pd.Index  # the evaluated users
    k: int

    def per_user(self, values: pd.Series) -> pd.Series:
        """Sum a slot-level series per user; users without slots get 0."""
        return values.groupby(self.slots["user_id"]).sum().reindex(self.users, fill_value=0)

    @property
    def hits(self) -> pd.Series:
        return self.per_user(self.slots["hit"].astype(float))

    @property
    def relevant(self) -> pd.Series:
        return self.held_out.groupby("user_id").size().reindex(self.users)

    @property
    def achievable(self) -> pd.Series:
        """Most hits a K-long list can have: min(|T|, K)."""
        return self.relevant.clip(upper=self.k)


def judge(recommendations: pd.DataFrame, held_out: pd.DataFrame, k: int) -> Judged:
    users = pd.Index(held_out["user_id"].unique(), name="user_id")
    ordered = recommendations[recommendations["user_id"].isin(users)].sort_values(["user_id", "rank"], kind="stable")
    ordered = ordered.drop_duplicates(["user_id", "item_id"])
    # Positions 1..n per user, whatever the recommender's rank numbering (gaps, offsets).
    ordered = ordered.assign(position=ordered.groupby("user_id").cumcount() + 1)
    top = ordered[ordered["position"] <= k][["user_id", "position", "item_id"]]
    slots = top.merge(held_out[["user_id", "item_id", "price"]], on=["user_id", "item_id"], how="left", indicator=True)
    slots["hit"] = slots.pop("_merge") == "both"
    slots["price"] = slots["price"].where(slots["hit"], 0.0).fillna(0.0)
    return Judged(slots.reset_index(drop=True), held_out, users, k)


def hit_rate(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.hits > 0)


def precision(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.hits / judged.k)


def recall(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.hits / judged.relevant)


def mean_average_precision(judged: Judged, stats: TrainingStats) -> float:
    slots = judged.slots
    hits_so_far = slots["hit"].astype(float).groupby(slots["user_id"]).cumsum()
    precision_at_hit = (hits_so_far / slots["position"]).where(slots["hit"], 0.0)
    return _mean(judged.per_user(precision_at_hit) / judged.achievable)


def ndcg(judged: Judged, stats: TrainingStats) -> float:
    slots = judged.slots
    dcg = judged.per_user(slots["hit"] / np.log2(slots["position"] + 1))
    discounts = np.concatenate([[0.0], np.cumsum(1 / np.log2(np.arange(2, judged.k + 2)))])
    ideal = judged.achievable.map(lambda n: discounts[int(n)])
    return _mean(dcg / ideal)


def revenue(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.per_user(judged.slots["price"]))


def category_recall(judged: Judged, stats: TrainingStats) -> float:
    def categories(frame: pd.DataFrame) -> pd.DataFrame:
        tagged = frame[["user_id", "item_id"]].assign(category=frame["item_id"].map(stats.categories))
        return tagged.dropna(subset=["category"]).drop_duplicates(["user_id", "category"])[["user_id", "category"]]

    wanted = categories(judged.held_out)
    found = wanted.merge(categories(judged.slots), on=["user_id", "category"], how="left", indicator=True)
    found["hit"] = found.pop("_merge") == "both"
    return _mean(found.groupby("user_id")["hit"].mean())


def top_bias(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.slots["item_id"].isin(stats.popular))


def novelty(judged: Judged, stats: TrainingStats) -> float:
    slots = judged.slots
    buyers = slots["item_id"].map(stats.buyers).fillna(0).clip(lower=1)
    surprisal = -np.log2(buyers / max(stats.training_users, 1))
    return _mean(surprisal.groupby(slots["user_id"]).mean())


def serendipity(judged: Judged, stats: TrainingStats) -> float:
    slots = judged.slots
    unexpected_hits = slots["hit"] & ~slots["item_id"].isin(stats.popular)
    return _mean(judged.per_user(unexpected_hits.astype(float)) / judged.k)


def coverage(judged: Judged, stats: TrainingStats) -> float:
    recommended = set(judged.slots["item_id"].unique().tolist())
    return len(recommended & stats.catalog) / len(stats.catalog) if stats.catalog else float("nan")


def valid_id_rate(judged: Judged, stats: TrainingStats) -> float:
    return _mean(judged.slots["item_id"].isin(stats.catalog))


def _mean(values: pd.Series) -> float:
    """Mean that is NaN (not an error, not 0) when nothing is there to average."""
    return float(values.mean()) if len(values) else float("nan")


Metric = Callable[[Judged, TrainingStats], float]

METRICS: dict[str, Metric] = {
    "hit_rate": hit_rate,
    "precision": precision,
    "recall": recall,
    "map": mean_average_precision,
    "ndcg": ndcg,
    "revenue": revenue,
    "top_bias": top_bias,
    "category_recall": category_recall,
    "novelty": novelty,
    "serendipity": serendipity,
    "coverage": coverage,
    "valid_id_rate": valid_id_rate,
}


def evaluate(recommendations: pd.DataFrame, held_out: pd.DataFrame, stats: TrainingStats, ks: Iterable[int]) -> pd.DataFrame:
    """Every metric at every K for one recommender: ``metric, k, value`` rows."""
    rows = []
    for k in ks:
        judged = judge(recommendations, held_out, k)
        rows += [{"metric": name, "k": k, "value": metric(judged, stats)} for name, metric in METRICS.items()]
    return pd.DataFrame(rows, columns=["metric", "k", "value"])


def relative_deltas(metrics: pd.DataFrame, model: str, k: int) -> pd.DataFrame:
    """``model`` vs every other model at K: rows metric, columns other models, values
    (model - other) / other. For ``top_bias`` a negative delta is the improvement."""
    table = metrics[metrics["k"] == k].pivot_table(index="metric", columns="model", values="value", aggfunc="first")
    others = [column for column in table.columns if column != model]
    deltas = table[others].rdiv(table[model], axis=0).sub(1.0)
    return deltas.replace([np.inf, -np.inf], np.nan).reindex([m for m in METRICS if m in deltas.index])


def standing(values: pd.Series, model: str, label: str) -> str:
    """One line on where ``model`` stands against the best other recommender on one metric
    (``values``: recommender -> score, higher is better), e.g. for a team deciding whether the
    LLM earns its cost: "hit_rate@10: llm 0.412, 12.3% behind the best baseline (ease, 0.470)"."""
    others = values.drop(index=[m for m in values.index if m == model or m.startswith(f"{model}_")], errors="ignore").dropna()
    if model not in values.index or others.empty:
        return f"{label}: nothing to compare {model} with"
    best = others.idxmax()
    gap = values[model] / others[best] - 1 if others[best] else float("inf")
    return f"{label}: {model} {values[model]:.3f}, {abs(gap):.1%} {'ahead of' if gap >= 0 else 'behind'} the best baseline ({best}, {others[best]:.3f})"

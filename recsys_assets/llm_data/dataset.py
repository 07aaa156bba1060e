"""Assemble the prompt dataset: one example per user and split (and training window).

Splits (see splits.py): ``train`` (target: the configured source mix, at the training
cut-off and at ``train_windows - 1`` earlier cut-offs ``window_days`` apart), ``val`` and
``test`` (target: what the user bought next in the period), ``serve`` (the newest history,
no target: what recommendations are generated from).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate, chain

import numpy as np
import pandas as pd

from gpu_jobs.prompt_format import format_item_ids, generation_prefix
from recsys_assets.llm_data.history import ByUser, histories_before, items_bought_between
from recsys_assets.llm_data.prompts import build_prompt, fit_history
from recsys_assets.llm_data.targets import interleave, mix_target, open_intent, quotas
from recsys_assets.llm_data.token_lengths import TokenLengths
from resources.splits import SplitDates

SPLITS = ("train", "val", "test", "serve")


@dataclass
class MarketData:
    purchases: pd.DataFrame  # user_id, item_id, ts
    wishlist: pd.DataFrame  # user_id, item_id, ts
    cart: pd.DataFrame  # user_id, item_id, ts
    users: pd.DataFrame  # user_id, gender, age, geo
    price_percentile: dict[int, float]  # item -> price position within its category (0-1)
    similar_items: dict[int, list[int]] = field(default_factory=dict)
    similar_users: dict[int, list[int]] = field(default_factory=dict)
    cluster_candidates: dict[int, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    shares: dict[str, float]
    target_items: int = 20
    history_max_items: int = 50
    max_seq_len: int = 310
    intent_days: int = 182  # how far back a wishlist/cart addition still counts as open intent
    train_windows: int = 1  # training cut-offs: the training cut-off and the windows before it
    window_days: int = 14  # days between training cut-offs: the next_purchases window
    train_users: int = 125_000  # users with training examples, a stratified sample past that (0: every user)
    seed: int = 0  # of the training sample

    def __post_init__(self) -> None:
        if self.train_windows < 1 or self.window_days < 1:
            raise ValueError(f"train_windows and window_days must be >= 1, got {self.train_windows} and {self.window_days}")
        if "next_purchases" in self.shares and self.train_windows < 2:
            # The training cut-off's own next purchases are the validation period.
            raise ValueError("The next_purchases target learns from earlier windows: set train_windows to 2 or more.")


def purchasing_power_at(purchases: pd.DataFrame, price_percentile: dict[int, float], cutoff) -> dict[int, float]:
    """Rank (0-1) of each buyer's mean in-category price percentile, from purchases before cutoff."""
    before = purchases[purchases["ts"] < pd.Timestamp(cutoff)]
    paid = before["item_id"].map(price_percentile)
    mean_paid = paid.groupby(before["user_id"]).mean().dropna()
    return ((mean_paid.rank(method="average") - 1) / max(len(mean_paid) - 1, 1)).to_dict()


def activity_bucket(purchases: pd.Series) -> pd.Series:
    """0 for users without purchases (cold start), else 1 + floor(log2(purchases)): 1, 2-3, 4-7, ... purchases."""
    return np.where(purchases > 0, 1 + np.floor(np.log2(np.maximum(purchases, 1))), 0).astype(int)


def training_sample(purchases: pd.DataFrame, user_ids, cutoff, size: int, seed: int = 0) -> set[int]:
    """Up to ``size`` users, stratified by how much they had bought before ``cutoff``: every activity
    bucket (cold start, light, ..., heavy) keeps its share of the users and at least one of them, so
    training time stops growing with the marketplace while every kind of buyer stays in it."""
    users = pd.Index(pd.unique(np.asarray(user_ids)), name="user_id")
    if not size or len(users) <= size:
        return set(users.tolist())
    before = purchases.loc[purchases["ts"] < pd.Timestamp(cutoff), "user_id"]
    counts = before.value_counts().reindex(users, fill_value=0)
    buckets = pd.Series(activity_bucket(counts.to_numpy()), index=users)
    sizes = buckets.value_counts()
    quota = np.maximum(1, np.floor(size * sizes / len(users))).astype(int)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(buckets.index[buckets == bucket].to_numpy(), size=min(int(n), int(sizes[bucket])), replace=False)
        for bucket, n in quota.sort_index().items()
    ]
    return {int(user) for group in chosen for user in group}


def target_sources(user: int, wishlist: dict, cart: dict, bought_next: dict, data: MarketData, wanted) -> dict[str, list[int]]:
    """The ranked candidates of each ``wanted`` source for one user (only those: most mixes use one or two)."""
    own_wishlist, own_cart = wishlist.get(user, []), cart.get(user, [])
    sources = {
        "own_wishlist": lambda: own_wishlist,
        "own_cart": lambda: own_cart,
        "similar_users_intent": lambda: interleave(
            interleave([wishlist.get(n, []), cart.get(n, [])]) for n in data.similar_users.get(user, [])
        ),
        "similar_to_wishlist": lambda: interleave(data.similar_items.get(i, []) for i in own_wishlist),
        "similar_to_cart": lambda: interleave(data.similar_items.get(i, []) for i in own_cart),
        "interest_clusters": lambda: data.cluster_candidates.get(user, []),
        "next_purchases": lambda: bought_next.get(user, []),
    }
    return {source: sources[source]() for source in wanted}


_NEEDS_WISHLIST = {"own_wishlist", "similar_users_intent", "similar_to_wishlist"}
_NEEDS_CART = {"own_cart", "similar_users_intent", "similar_to_cart"}


# Users whose examples are built, checked and written at a time: memory stays flat however large the
# marketplace (at 1M users the whole dataset as one frame of rows did not fit in 24 GB).
USERS_PER_CHUNK = 50_000
# Examples per chunk whose summed token lengths are confirmed by tokenizing them whole.
VERIFIED_PER_CHUNK = 2_000


class Builder:
    """Builds the examples of each split a chunk of users at a time; ``lengths`` measures them with
    the id tokenizer. A chunk's examples do not depend on the chunk size."""

    def __init__(self, data: MarketData, spec: DatasetSpec, dates: SplitDates, lengths: TokenLengths, users_per_chunk: int = USERS_PER_CHUNK):
        self.data, self.spec, self.dates, self.lengths = data, spec, dates, lengths
        self.users_per_chunk = users_per_chunk
        self.attributes = data.users.set_index("user_id")[["geo", "age", "gender"]].to_dict("index")
        self.purchases = ByUser(data.purchases)
        # Serve, val and test prompts cover every user; training examples only the sample.
        self.train_users = training_sample(data.purchases, list(self.attributes), dates.train_cutoff, spec.train_users, spec.seed)
        self.serve_target_tokens = 0  # room a serve prompt leaves for its answer, set once training examples are built
        self.recounted = 0  # examples whose lengths were not sums of their parts (fitted text by text)

    def train_cutoffs(self) -> list[date]:
        """The training cut-off and the ``train_windows - 1`` cut-offs before it, newest first."""
        return [self.dates.train_cutoff - timedelta(days=k * self.spec.window_days) for k in range(self.spec.train_windows)]

    def chunks(self, splits: Sequence[str] = SPLITS) -> Iterator[pd.DataFrame]:
        """The examples of ``splits``, a frame per chunk of users, training first: serve prompts leave
        room for an answer as long as the training targets (``reserved_target_tokens``)."""
        train_target_tokens = []
        for split in splits:
            if split == "serve":
                self.serve_target_tokens = reserved_target_tokens(np.concatenate(train_target_tokens or [np.empty(0)]))
            for chunk in self.split_chunks(split):
                if split == "train":
                    train_target_tokens.append(chunk["target_tokens"].to_numpy())
                yield chunk

    def examples(self, split: str) -> pd.DataFrame:
        """One split's examples in one frame (serve prompts: beside ``serve_target_tokens``)."""
        return one_frame(self.split_chunks(split))

    def split_chunks(self, split: str) -> Iterator[pd.DataFrame]:
        cutoffs = self.train_cutoffs() if split == "train" else [self.dates.prompt_cutoff(split)]
        users = sorted(self.train_users if split == "train" else self.attributes)
        for cutoff in cutoffs:
            # What ranks or links users across the marketplace is computed once per cut-off, not per chunk.
            power = purchasing_power_at(self.data.purchases, self.data.price_percentile, cutoff)
            intent = self._open_intent(cutoff) if split == "train" else ({}, {})
            for start in range(0, len(users), self.users_per_chunk):
                chunk = users[start : start + self.users_per_chunk]
                yield self._examples_of(split, cutoff, chunk, power, intent)

    def _examples_of(self, split: str, cutoff: date, users: list[int], power: dict, intent: tuple[dict, dict]) -> pd.DataFrame:
        purchases = self.purchases.between(users[0], users[-1])
        histories = histories_before(purchases, cutoff, self.spec.history_max_items)
        targets = self._targets(split, cutoff, users, histories, purchases, intent)
        users = users if split == "serve" else [user for user in users if user in targets]
        reserve = self.serve_target_tokens if split == "serve" else 0
        self.lengths.learn_ids(chain.from_iterable([histories.get(u, []) for u in users] + [[i for i, _ in t] for t in targets.values()]))
        frames = self.lengths.exact([generation_prefix(self._prompt(user, [], power.get(user))) for user in users])
        rows = [
            self._row(split, cutoff, user, *self._fit_by_sums(frame, histories.get(user, []), targets.get(user, []), reserve), power.get(user))
            for user, frame in zip(users, frames)
        ]
        # The sums are checked against whole texts: a seeded sample of the chunk, and the whole chunk where
        # the sample finds a sum that is off (a tokenizer whose lengths do not add up); those are fitted text by text.
        off = self._count_whole(rows, self._verification_sample(len(rows)))
        if off:
            off = sorted(set(off) | set(self._count_whole(rows)))  # the sample's rows hold whole counts already
        for index in off:
            user = rows[index]["user_id"]
            fitted = self._fit_text_by_text(user, histories.get(user, []), targets.get(user, []), power.get(user), reserve)
            rows[index] = self._row(split, cutoff, user, *fitted, power.get(user))
        self.recounted += len(off)
        if off:
            self._count_whole([rows[index] for index in off])
        return pd.DataFrame(rows, columns=_COLUMNS)

    def _open_intent(self, cutoff: date) -> tuple[dict, dict]:
        """Open wishlists and carts at ``cutoff``, of every user (similar users' count too), where the mix uses them."""
        wanted, since = set(self.spec.shares), cutoff - timedelta(days=self.spec.intent_days)
        wishlist = open_intent(self.data.wishlist, self.data.purchases, cutoff, since) if wanted & _NEEDS_WISHLIST else {}
        cart = open_intent(self.data.cart, self.data.purchases, cutoff, since) if wanted & _NEEDS_CART else {}
        return wishlist, cart

    def _targets(self, split: str, cutoff: date, users, histories, purchases, intent) -> dict[int, list[tuple[int, str]]]:
        """Targets of ``users`` (whose purchases are ``purchases``)."""
        if split == "serve":
            return {}
        if split in ("val", "test"):
            start, end = self.dates.period(split)
            bought = items_bought_between(purchases, start, end)
            return {u: [(i, "next_purchases") for i in items[: self.spec.target_items]] for u, items in bought.items()}
        # Never past the training cut-off: the newest window's next purchases are the val period.
        window_end = min(cutoff + timedelta(days=self.spec.window_days), self.dates.train_cutoff)
        bought_next = items_bought_between(purchases, cutoff, window_end) if "next_purchases" in self.spec.shares else {}
        targets = {}
        for user in users:
            sources = target_sources(user, *intent, bought_next, self.data, self.spec.shares)
            mixed = mix_target(sources, self.spec.shares, self.spec.target_items, exclude=histories.get(user, []))
            if mixed:
                targets[user] = mixed
        return targets

    def _prompt(self, user: int, history, purchasing_power) -> str:
        attributes = self.attributes[user]
        return build_prompt(history, user, attributes["geo"], attributes["age"], attributes["gender"], purchasing_power)

    def _fit(self, history: list[int], target: list, target_reserve: int, prompt_tokens, target_tokens):
        """(kept history, kept target, prompt tokens, target tokens): the target first, then the newest
        history that fits beside it. ``prompt_tokens(h)`` and ``target_tokens(items)`` measure."""
        items = [item for item, _ in target]
        reserved = target_tokens(items) if items else target_reserve
        while items and prompt_tokens([]) + reserved > self.spec.max_seq_len:
            items.pop()  # only a tiny max_seq_len gets here: shorten the target until it fits
            reserved = target_tokens(items)
        kept = fit_history(history, reserved, self.spec.max_seq_len, prompt_tokens)
        return kept, target[: len(items)], prompt_tokens(kept), target_tokens(items) if items else 0

    def _fit_by_sums(self, frame_tokens: int, history: list[int], target: list, target_reserve: int):
        """The fit measured by token sums: the frame's tokens plus the ids' and separators'."""
        separator = self.lengths.separator
        # with_separators[k]: the first k ids, each followed by a separator (the last one is not).
        with_separators = [0, *accumulate(tokens + separator for tokens in self.lengths.id_tokens(history))]
        return self._fit(
            history,
            target,
            target_reserve,
            lambda h: frame_tokens + (with_separators[len(h)] - separator if h else 0),
            lambda items: self.lengths.of_ids(items) + 1,
        )

    def _fit_text_by_text(self, user: int, history: list[int], target: list, purchasing_power, target_reserve: int):
        """The fit with every candidate text tokenized whole: for tokenizers whose lengths do not add up."""

        def prompt_tokens(h) -> int:
            return self.lengths.one(generation_prefix(self._prompt(user, h, purchasing_power)))

        return self._fit(history, target, target_reserve, prompt_tokens, self._target_tokens)

    def _verification_sample(self, rows: int) -> list[int]:
        """Which rows of a chunk are recounted whole: counting every text again was a third of the layer's time."""
        if rows <= VERIFIED_PER_CHUNK:
            return list(range(rows))
        return sorted(np.random.default_rng(self.spec.seed).choice(rows, size=VERIFIED_PER_CHUNK, replace=False).tolist())

    def _count_whole(self, rows: list[dict], indices: Sequence[int] | None = None) -> list[int]:
        """Sets the lengths of the rows at ``indices`` (all by default) from their whole prompt and target;
        returns the indices whose earlier lengths differed."""
        indices = range(len(rows)) if indices is None else indices
        counted = [rows[index] for index in indices]
        prompt_tokens = self.lengths.exact([generation_prefix(row["prompt"]) for row in counted])
        target_tokens = [n + 1 if n else 0 for n in self.lengths.exact([row["target"] for row in counted])]
        off = []
        for index, row, prompt, target in zip(indices, counted, prompt_tokens, target_tokens):
            if (row["prompt_tokens"], row["target_tokens"]) != (prompt, target):
                off.append(index)
            row["prompt_tokens"], row["target_tokens"] = prompt, target
        return off

    def _row(self, split, cutoff, user, history, target, prompt_tokens, target_tokens, purchasing_power) -> dict:
        items = [item for item, _ in target]
        return {
            "user_id": int(user),
            "split": split,
            "cutoff": cutoff,
            "prompt": self._prompt(user, history, purchasing_power),
            "target": format_item_ids(items),
            "target_item_ids": items,
            "target_sources": [source for _, source in target],
            # Every source filled its quota (no backfill): the examples on which the mix is exact.
            "mix_complete": split == "train" and self._mix_complete(target),
            "history_length": len(history),
            "prompt_tokens": prompt_tokens,
            "target_tokens": target_tokens,
        }

    def _mix_complete(self, target: list[tuple[int, str]]) -> bool:
        wanted = quotas(self.spec.shares, self.spec.target_items)
        got = [source for _, source in target]
        return all(got.count(source) == n for source, n in wanted.items())

    def _target_tokens(self, items: list[int]) -> int:
        return self.lengths.one(format_item_ids(items)) + 1  # + eos


_COLUMNS = [
    "user_id", "split", "cutoff", "prompt", "target", "target_item_ids", "target_sources", "mix_complete",
    "history_length", "prompt_tokens", "target_tokens",
]  # fmt: skip


def one_frame(chunks: Iterator[pd.DataFrame]) -> pd.DataFrame:
    frames = list(chunks)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_COLUMNS)


def build_dataset(data: MarketData, spec: DatasetSpec, dates: SplitDates, lengths: TokenLengths) -> pd.DataFrame:
    """Every split's examples in one frame, for data small enough to hold (the tests);
    ``attrs["fitted_text_by_text"]`` counts those whose token sums were off."""
    builder = Builder(data, spec, dates, lengths)
    examples = one_frame(builder.chunks())
    examples.attrs["fitted_text_by_text"] = builder.recounted
    return examples


def reserved_target_tokens(train_target_tokens) -> int:
    """Room a serving prompt leaves for its answer: as long as 90% of the training targets."""
    tokens = np.asarray(train_target_tokens)
    return int(np.ceil(np.quantile(tokens, 0.9))) if len(tokens) else 0

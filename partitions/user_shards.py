"""User-range shards: the partitions of everything computed per user (recommendations first).

A shard is a contiguous, inclusive range of user ids, keyed ``u<lo>-<hi>`` (``u1201-2400``).
A backfill of N shards is N independent jobs (N GPUs in production).

Shards are planned from the users present, to hold about ``RECSYS_USERS_PER_SHARD`` users
each (default 1,000; a GPU job's worth in production):

- the first registration cuts the id range at quantiles of the users' ids, so the shards hold
  equal numbers of users however the ids are spread (random, dense 1..N, clustered);
- later users above every shard (sequential ids: the newest users) open shards of the id width
  that held ``users_per_shard`` users in the newest shard, so they fill up to the same size as
  users keep arriving, instead of one tiny shard per day;
- users in a gap between registered shards (ids older than the shards, or keys planned by an
  older rule) get shards cut at quantiles inside that gap.

A registered key never changes, so re-materializing a shard always covers the same users. Keys
of the earlier 19-digit form (``u0000000000200000000-0000000000399999999``) still parse. The
shard sensor (recsys_assets/sensors.py) and ``recsys run`` register what ``plan_new_shards``
returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
import numpy as np

from resources import settings

MAX_USER_ID = 2**63 - 1
_KEY = re.compile(r"u(\d{1,19})-(\d{1,19})")

user_shards = dg.DynamicPartitionsDefinition(name="user_shards")


@dataclass(frozen=True, order=True)
class ShardRange:
    """Inclusive range of user ids [lo, hi]."""

    lo: int
    hi: int

    @property
    def key(self) -> str:
        return f"u{self.lo}-{self.hi}"

    def contains(self, user_id: int) -> bool:
        return self.lo <= user_id <= self.hi

    def sql_filter(self, column: str = "user_id") -> str:
        return f"{column} BETWEEN {self.lo} AND {self.hi}"


def shard_range(key: str) -> ShardRange:
    """The id range of a shard key; raises ValueError for anything that is not a shard key."""
    match = _KEY.fullmatch(key)
    if not match:
        raise ValueError(f"{key!r} is not a user shard key (expected u<first id>-<last id>, e.g. u1201-2400)")
    shard = ShardRange(int(match.group(1)), int(match.group(2)))
    if shard.lo > shard.hi or shard.hi > MAX_USER_ID:
        raise ValueError(f"{key!r}: not a range of non-negative int64 ids ({shard.lo} .. {shard.hi})")
    return shard


def plan_new_shards(user_ids: Iterable[int], existing_keys: Sequence[str], users_per_shard: int | None = None) -> list[ShardRange]:
    """Shards to register so that every user id lies in exactly one shard.

    ``user_ids`` are all the users (not only the uncovered ones: the newest shard's density sets
    the width of the shards after it). Existing shards are kept as they are. Returns the new
    shards in id order (empty when every user is covered).
    """
    target = users_per_shard or settings.users_per_shard()
    if target < 1:
        raise ValueError(f"users per shard must be positive, got {target}")
    ids = _checked_ids(user_ids)
    existing = sorted(shard_range(key) for key in existing_keys)
    newest = existing[-1] if existing else None
    planned: list[ShardRange] = []
    for gap in _free_ranges(existing):
        inside = ids[(ids >= gap.lo) & (ids <= gap.hi)]
        if not inside.size:
            continue
        if newest and gap.lo == newest.hi + 1 and gap.hi == MAX_USER_ID:
            planned += _cells_after(newest, ids, inside, target)
        else:
            planned += _quantile_cut(inside, gap, target)
    return planned


def _checked_ids(user_ids: Iterable[int]) -> np.ndarray:
    values = [int(user_id) for user_id in user_ids]
    for user_id in values:
        if not 0 <= user_id <= MAX_USER_ID:
            raise ValueError(f"user id {user_id} is outside 0..2^63-1: shard keys cover non-negative int64 ids")
    return np.unique(np.asarray(values, dtype=np.int64))


def _free_ranges(existing: list[ShardRange]) -> list[ShardRange]:
    """The id ranges no registered shard covers, in order."""
    free, start = [], 0
    for shard in existing:
        if shard.lo > start:
            free.append(ShardRange(start, shard.lo - 1))
        start = shard.hi + 1
    if start <= MAX_USER_ID:
        free.append(ShardRange(start, MAX_USER_ID))
    return free


def _quantile_cut(inside: np.ndarray, gap: ShardRange, target: int) -> list[ShardRange]:
    """``inside`` (sorted users of ``gap``) cut into shards of equal user counts, covering the gap up
    to its last user (or to its end when a registered shard bounds it from above)."""
    count = max(1, round(inside.size / target))
    starts = [gap.lo, *(int(inside[i * inside.size // count]) for i in range(1, count))]
    last = gap.hi if gap.hi < MAX_USER_ID else int(inside[-1])
    ends = [start - 1 for start in starts[1:]] + [last]
    return [ShardRange(lo, hi) for lo, hi in zip(starts, ends)]


def _cells_after(newest: ShardRange, ids: np.ndarray, inside: np.ndarray, target: int) -> list[ShardRange]:
    """Cells after the newest shard, each as wide as the id span that held ``target`` users in it."""
    held = int(((ids >= newest.lo) & (ids <= newest.hi)).sum())
    if not held:
        return _quantile_cut(inside, ShardRange(newest.hi + 1, MAX_USER_ID), target)
    width = max(1, round(target * (newest.hi - newest.lo + 1) / held))
    origin = newest.hi + 1
    cells = sorted({(int(user_id) - origin) // width for user_id in inside})  # Python ints: the width can pass int64
    return [ShardRange(origin + cell * width, min(origin + (cell + 1) * width - 1, MAX_USER_ID)) for cell in cells]

"""User-range shards: the partitions of everything computed per user (recommendations first).

A shard is a contiguous, inclusive range of user ids, keyed ``u<lo>-<hi>`` with both bounds
zero-padded to 19 digits (the width of the largest int64) so that keys sort like their ranges
and never contain a comma. A backfill of N shards is N independent jobs (N GPUs in production).

Shards are planned on a fixed grid of ``width`` ids (``RECSYS_SHARD_WIDTH``, default 200M):
a user belongs to the grid cell ``user_id // width``. The grid, not the current user count,
decides the ranges, so a key once registered never changes and re-materializing a shard
always covers the same users. A user outside every registered shard opens the cell around
them; if the width was changed after shards were registered, the new cell is clipped so that
it never overlaps an older shard. The shard sensor (recsys_assets/sensors.py) registers the
keys that ``plan_new_shards`` returns.

The grid balances users when ids are spread evenly over the id space (random ids) or grow
over time (sequential ids: new users fill the newest cell, then open the next one); pick a
width that gives each shard about one GPU-job's worth of users.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg

DIGITS = 19  # len(str(2**63 - 1))
MAX_USER_ID = 2**63 - 1
SHARD_WIDTH = int(os.environ.get("RECSYS_SHARD_WIDTH", "200000000"))

user_shards = dg.DynamicPartitionsDefinition(name="user_shards")


@dataclass(frozen=True, order=True)
class ShardRange:
    """Inclusive range of user ids [lo, hi]."""

    lo: int
    hi: int

    @property
    def key(self) -> str:
        return f"u{self.lo:0{DIGITS}d}-{self.hi:0{DIGITS}d}"

    def contains(self, user_id: int) -> bool:
        return self.lo <= user_id <= self.hi

    def sql_filter(self, column: str = "user_id") -> str:
        return f"{column} BETWEEN {self.lo} AND {self.hi}"


def shard_range(key: str) -> ShardRange:
    """The id range of a shard key; raises ValueError for anything that is not a shard key."""
    lo, sep, hi = key.removeprefix("u").partition("-")
    if not key.startswith("u") or not sep or len(lo) != DIGITS or len(hi) != DIGITS or not (lo + hi).isdigit():
        raise ValueError(f"{key!r} is not a user shard key (expected u<{DIGITS} digits>-<{DIGITS} digits>)")
    shard = ShardRange(int(lo), int(hi))
    if shard.lo > shard.hi:
        raise ValueError(f"{key!r}: the range is empty ({shard.lo} > {shard.hi})")
    return shard


def plan_new_shards(user_ids: Iterable[int], existing_keys: Sequence[str], width: int = SHARD_WIDTH) -> list[ShardRange]:
    """Shards to register so that every user id lies in exactly one shard.

    Existing shards are kept as they are; users they do not cover get the grid cell of
    ``width`` ids around them, clipped to the gap between the existing shards next to them.
    Returns the new shards in id order (empty when every user is covered).
    """
    if width < 1:
        raise ValueError(f"shard width must be positive, got {width}")
    existing = sorted(shard_range(key) for key in existing_keys)
    starts = [shard.lo for shard in existing]
    planned: dict[tuple[int, int], ShardRange] = {}
    for user_id in user_ids:
        if not 0 <= user_id <= MAX_USER_ID:
            raise ValueError(f"user id {user_id} is outside 0..2^63-1: shard keys cover non-negative int64 ids")
        gap = _gap_around(existing, starts, user_id)
        if gap is None:
            continue  # covered by a registered shard
        # A registered shard can cut a grid cell in two free parts: (cell, gap) names the part.
        cell_lo = user_id // width * width
        planned[(cell_lo, gap.lo)] = ShardRange(max(cell_lo, gap.lo), min(cell_lo + width - 1, gap.hi))
    return sorted(planned.values())


def _gap_around(existing: list[ShardRange], starts: list[int], user_id: int) -> ShardRange | None:
    """The free id range around ``user_id`` between registered shards, or None if one covers it."""
    index = bisect.bisect_right(starts, user_id)
    below = existing[index - 1] if index else None
    if below and below.contains(user_id):
        return None
    above = existing[index] if index < len(existing) else None
    return ShardRange(below.hi + 1 if below else 0, above.lo - 1 if above else MAX_USER_ID)

"""The shrink guard: a replace never makes a table or a day smaller by surprise.

An export job that breaks rarely fails; it writes an empty file, a file in a layout nobody
reads, or ids the contract rejects. Replacing the warehouse with that would be a green run
that deletes good data, so such a replace stops and says what it found instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowCounts:
    loaded: int
    quarantined: int

    @property
    def read(self) -> int:
        return self.loaded + self.quarantined

    def __str__(self) -> str:
        return f"{self.loaded} loaded, {self.quarantined} quarantined"


@dataclass(frozen=True)
class ShrinkGuard:
    allow_shrink: bool = False  # accept a deliberate shrink (logged and in the metadata)
    max_shrink_share: float = 0.2  # the largest share of valid rows a replace may lose
    unread_files: tuple[str, ...] = ()  # landing files no table reads, named in the error


def shrink_problem(before: RowCounts, after: RowCounts, max_share: float, snapshot: bool) -> str | None:
    """Why replacing ``before`` with ``after`` would be a surprise, or None when it is not.

    A snapshot must never be empty; a day may be empty only if it never held rows (a quiet
    day of an optional table), and no replace may lose more than ``max_share`` of its valid rows.
    """
    if after.read == 0 and (snapshot or before.read):
        return f"the source has no rows (now: {before})"
    if before.loaded and after.loaded < before.loaded * (1 - max_share):
        lost = 1 - after.loaded / before.loaded
        return (
            f"{after.loaded} valid rows would replace {before.loaded} ({lost:.0%} fewer, more than the allowed "
            f"{max_share:.0%}); of the {after.read} rows read, {after.quarantined} would be quarantined"
        )
    return None

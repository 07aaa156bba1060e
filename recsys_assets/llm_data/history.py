"""Purchase histories and next purchases around a cut-off, from a purchases frame."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd


class ByUser:
    """Rows sorted by user once, so that the rows of a range of users are a slice, not a scan: the
    prompt dataset is built a chunk of users at a time."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows.sort_values("user_id", kind="stable", ignore_index=True)
        self._users = self.rows["user_id"].to_numpy()

    def between(self, first: int, last: int) -> pd.DataFrame:
        """The rows of users ``first`` to ``last``, both included."""
        start, end = np.searchsorted(self._users, first, side="left"), np.searchsorted(self._users, last, side="right")
        return self.rows.iloc[start:end]


def ordered_lists(rows: pd.DataFrame, key: str = "user_id", value: str = "item_id") -> dict[int, list[int]]:
    """{key: values in row order} for rows already sorted by ``key``: one split of the column, where a
    pandas ``groupby(...).apply(list)`` builds a Python list per group (seconds per million rows)."""
    keys, values = rows[key].to_numpy(), rows[value].to_numpy()
    if not len(keys):
        return {}
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return dict(zip(keys[starts].tolist(), (chunk.tolist() for chunk in np.split(values, starts[1:]))))


def histories_before(purchases: pd.DataFrame, cutoff: date, max_items: int) -> dict[int, list[int]]:
    """Per user: item ids bought before ``cutoff``, newest first, at most ``max_items``."""
    before = purchases[purchases["ts"] < pd.Timestamp(cutoff)].sort_values(["user_id", "ts", "item_id"], ascending=[True, False, True])
    return ordered_lists(before[before.groupby("user_id").cumcount().to_numpy() < max_items])


def items_bought_between(purchases: pd.DataFrame, start: date, end: date) -> dict[int, list[int]]:
    """Per user: distinct items bought in [start, end), in order of first purchase."""
    window = purchases[(purchases["ts"] >= pd.Timestamp(start)) & (purchases["ts"] < pd.Timestamp(end))]
    first = window.sort_values(["ts", "item_id"]).drop_duplicates(["user_id", "item_id"])
    return ordered_lists(first.sort_values("user_id", kind="stable"))

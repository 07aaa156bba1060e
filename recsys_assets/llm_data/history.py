"""Purchase histories and next purchases around a cut-off, from a purchases frame."""

from __future__ import annotations

from datetime import date

import pandas as pd


def histories_before(purchases: pd.DataFrame, cutoff: date, max_items: int) -> dict[int, list[int]]:
    """Per user: item ids bought before ``cutoff``, newest first, at most ``max_items``."""
    before = purchases[purchases["ts"] < pd.Timestamp(cutoff)].sort_values(["user_id", "ts", "item_id"], ascending=[True, False, True])
    return {user: items[:max_items] for user, items in before.groupby("user_id")["item_id"].apply(list).items()}


def items_bought_between(purchases: pd.DataFrame, start: date, end: date) -> dict[int, list[int]]:
    """Per user: distinct items bought in [start, end), in order of first purchase."""
    window = purchases[(purchases["ts"] >= pd.Timestamp(start)) & (purchases["ts"] < pd.Timestamp(end))]
    first = window.sort_values(["ts", "item_id"]).drop_duplicates(["user_id", "item_id"])
    return first.groupby("user_id")["item_id"].apply(list).to_dict()

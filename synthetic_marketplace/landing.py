"""The synthetic marketplace as a landing folder: the layout README "Bring your own data" describes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from synthetic_marketplace.generator import Marketplace, MarketplaceSpec


def write_landing(market: Marketplace, spec: MarketplaceSpec, landing: Path) -> dict[str, int]:
    """Write the landing folder: snapshots as one file, events as one file per day."""
    landing.mkdir(parents=True, exist_ok=True)
    start = datetime.combine(spec.start_date, datetime.min.time())
    counts = {}
    for name, frame in (("users", market.users), ("items", market.items)):
        _write(frame, landing / f"{name}.{spec.file_format}", spec.file_format)
        counts[name] = len(frame)
    for name, frame in (("purchases", market.purchases), ("wishlist", market.wishlist), ("cart", market.cart)):
        frame = frame.copy()
        frame["ts"] = start + pd.to_timedelta(frame.pop("seconds").round(), unit="s")
        frame = frame[[c for c in ("user_id", "item_id", "ts", "price", "quantity") if c in frame]]
        folder = landing / name
        folder.mkdir(exist_ok=True)
        for day, rows in frame.groupby(frame["ts"].dt.date):
            _write(rows, folder / f"{day.isoformat()}.{spec.file_format}", spec.file_format)
        counts[name] = len(frame)
    truth = landing / "_truth"
    truth.mkdir(exist_ok=True)
    market.truth_users.to_parquet(truth / "users.parquet", index=False)
    market.truth_items.to_parquet(truth / "items.parquet", index=False)
    for name, frame in market.truth_extra.items():
        frame.to_parquet(truth / f"{name}.parquet", index=False)
    return counts


def _write(frame: pd.DataFrame, path: Path, file_format: str) -> None:
    if file_format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)

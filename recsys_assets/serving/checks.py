"""Checks on generated recommendations: what a team looks at first on a shard (or the test period).

They are evaluated inside the asset, on the rows it just wrote and the generation job's counts,
so every shard run reports its own results and the ids the model generated are judged before
invalid ones were dropped.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from recsys_assets.metadata import frame_table

VALID_IDS = "generated_ids_are_catalog_ids"
FULL_LISTS = "full_lists"
EVERY_USER_SERVED = "every_user_served"

# Below this share of catalog ids among the generated ones the model has not learnt the catalog
# (a healthy model on the default marketplace stays above it; a stale or broken one falls well below).
MIN_VALID_ID_RATE = 0.99
# A feed needs full lists: warn when fewer users than this get max_items (or every item they could get).
MIN_FULL_LIST_SHARE = 0.95
EXAMPLES = 10


def recommendation_check_specs(asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            VALID_IDS,
            asset=asset,
            description=f"At least {MIN_VALID_ID_RATE:.0%} of the ids the model generated are catalog ids (counted before "
            "invalid ones are dropped), and every served id is a catalog id.",
        ),
        dg.AssetCheckSpec(
            FULL_LISTS,
            asset=asset,
            description=f"At least {MIN_FULL_LIST_SHARE:.0%} of users get a full list: max_items, or every catalog item "
            "they can still be offered when that is fewer.",
        ),
        dg.AssetCheckSpec(EVERY_USER_SERVED, asset=asset, description="Every user with a prompt has recommendations.", blocking=True),
    ]


def valid_ids_check(generated_ids: int, valid_ids: int, served: pd.DataFrame, catalog: pd.Series) -> dg.AssetCheckResult:
    rate = valid_ids / generated_ids if generated_ids else None
    served_outside = served[~served["item_id"].isin(catalog)]
    passed = (rate is None or rate >= MIN_VALID_ID_RATE) and served_outside.empty
    return dg.AssetCheckResult(
        check_name=VALID_IDS,
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR if len(served_outside) else dg.AssetCheckSeverity.WARN,
        metadata={
            "generated_ids": generated_ids,
            # None: nothing was generated (a shard served by the popularity fallback).
            "valid_id_rate": round(rate, 4) if rate is not None else "no ids generated",
            "served_ids_outside_catalog": len(served_outside),
            **({"examples": frame_table(served_outside.head(EXAMPLES)[["user_id", "rank", "item_id"]])} if len(served_outside) else {}),
        },
    )


def list_lengths(served: pd.DataFrame, users: pd.Series) -> pd.Series:
    """Recommendations per user, 0 for users with none."""
    return served.groupby("user_id").size().reindex(pd.Index(users.unique(), name="user_id"), fill_value=0)


def full_lists_check(
    served: pd.DataFrame, users: pd.Series, max_items: int, catalog_size: int, excluded: pd.DataFrame | None
) -> dg.AssetCheckResult:
    """``excluded``: (user_id, item_id) pairs the policy never serves (already bought), or None."""
    lengths = list_lengths(served, users)
    left_out = excluded.groupby("user_id").size() if excluded is not None and len(excluded) else pd.Series(dtype="int64")
    possible = (catalog_size - left_out.reindex(lengths.index, fill_value=0)).clip(lower=0, upper=max_items)
    full = lengths >= possible
    share = float(full.mean()) if len(full) else 1.0
    short = lengths[~full].rename("items").reset_index().assign(possible=possible[~full].to_numpy())
    return dg.AssetCheckResult(
        check_name=FULL_LISTS,
        passed=share >= MIN_FULL_LIST_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "full_list_share": round(share, 4),
            "max_items": max_items,
            "mean_items_per_user": round(float(lengths.mean()), 1) if len(lengths) else 0.0,
            "shortest_list": int(lengths.min()) if len(lengths) else 0,
            **({"short_lists": frame_table(short.head(EXAMPLES))} if len(short) else {}),
        },
    )


def every_user_served_check(served: pd.DataFrame, users: pd.Series) -> dg.AssetCheckResult:
    lengths = list_lengths(served, users)
    missing = lengths[lengths == 0].index.to_series()
    return dg.AssetCheckResult(
        check_name=EVERY_USER_SERVED,
        passed=missing.empty,
        metadata={
            "users": len(lengths),
            "users_without_recommendations": len(missing),
            **({"examples": frame_table(missing.head(EXAMPLES).to_frame(name="user_id").reset_index(drop=True))} if len(missing) else {}),
        },
    )


def recommendation_checks(
    served: pd.DataFrame, users: pd.Series, catalog: pd.Series, job: dict, max_items: int, excluded: pd.DataFrame | None
) -> list[dg.AssetCheckResult]:
    """Every check above for one generation: ``job`` is the generation job's metadata (its id counts)."""
    return [
        valid_ids_check(int(job.get("generated_ids", 0)), int(job.get("valid_ids", 0)), served, catalog),
        full_lists_check(served, users, max_items, catalog.nunique(), excluded),
        every_user_served_check(served, users),
    ]

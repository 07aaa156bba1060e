"""Checks of the evaluation layer: every baseline has lists to compare with, and the LLM is ahead
of the simplest one. Both warn rather than block: the numbers are written either way, and a
regression is for a person to look at."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from recsys_assets.evaluation.tables import LLM
from recsys_assets.metadata import frame_table

BASELINE_LISTS = "lists_for_every_user"
BEATS_POPULARITY = "llm_beats_global_popularity"


def baseline_lists_check(recommendations: pd.DataFrame, users: pd.Series) -> dg.AssetCheckResult:
    """A baseline with no list for some users compares unfairly (those users count as misses)."""
    listed = set(recommendations["user_id"].unique())
    missing = users[~users.isin(listed)]
    return dg.AssetCheckResult(
        check_name=BASELINE_LISTS,
        passed=len(recommendations) > 0 and missing.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rows": len(recommendations),
            "users": len(users),
            "users_without_a_list": len(missing),
            **({"examples": frame_table(missing.head(5).to_frame(name="user_id").reset_index(drop=True))} if len(missing) else {}),
        },
    )


def beats_popularity(metrics: pd.DataFrame, k: int) -> dg.AssetCheckResult:
    """The LLM ahead of global popularity on HitRate@k and NDCG@k."""
    at_k = metrics[(metrics["k"] == k) & metrics["metric"].isin(["hit_rate", "ndcg"])]
    values = at_k.pivot_table(index="metric", columns="model", values="value", aggfunc="first")
    if LLM not in values.columns or "global_popularity" not in values.columns:
        missing = sorted({LLM, "global_popularity"} - set(values.columns))
        return dg.AssetCheckResult(
            check_name=BEATS_POPULARITY,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"missing_recommenders": ", ".join(missing)},
        )
    ahead = values[LLM] > values["global_popularity"]
    return dg.AssetCheckResult(
        check_name=BEATS_POPULARITY,
        passed=bool(ahead.all()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"{model}/{metric}@{k}": round(float(values.loc[metric, model]), 4)
            for metric in values.index
            for model in (LLM, "global_popularity")
        },
    )

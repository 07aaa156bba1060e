"""The candidate pool the LLM ranks beside what it generated: pure pandas, no Dagster.

Each source is one of the evaluation's baseline recommenders (``BASELINE_RECOMMENDERS``), fitted
on what the caller hands in: purchases before the test cut-off for the evaluation, every
purchase for the product. Its popularity fill (score 0) is left out: the popularity sources
bring popular items under their own name, so ``source`` says truly where an item came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from recsys_assets.evaluation.assets import BASELINE_RECOMMENDERS
from recsys_assets.evaluation.baselines import BaselineInputs, baseline_inputs

POOL_COLUMNS = ["user_id", "item_id", "source"]


def check_sources(sources: Sequence[str]) -> None:
    unknown = [s for s in sources if s not in BASELINE_RECOMMENDERS]
    if unknown:
        raise ValueError(f"Unknown candidate pool source(s) {', '.join(unknown)}; choose from {', '.join(BASELINE_RECOMMENDERS)}")


def candidate_pool(inputs: BaselineInputs, sources: Sequence[str], per_source: int) -> pd.DataFrame:
    """``user_id, item_id, source``: up to ``per_source`` items per user from each source, in the
    order of ``sources`` and then of each source's ranking (the generate job keeps an item's first source)."""
    check_sources(sources)
    frames = []
    for order, source in enumerate(sources):
        ranked = BASELINE_RECOMMENDERS[source](inputs, per_source)
        frames.append(ranked[ranked["score"] > 0].assign(source=source, order=order))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c != "source" else "object") for c in POOL_COLUMNS})
    pool = pd.concat(frames, ignore_index=True).sort_values(["user_id", "order", "rank"], kind="stable")
    return pool[POOL_COLUMNS].reset_index(drop=True)


def serving_inputs(purchases: pd.DataFrame, user_ids) -> BaselineInputs:
    """What the product's pool is fitted on: every purchase so far, for ``user_ids``."""
    end = purchases["ts"].max() + pd.Timedelta(seconds=1) if len(purchases) else pd.Timestamp.now()
    return baseline_inputs(purchases, user_ids, end, end)

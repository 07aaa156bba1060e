"""Checks on the LLM data: the tokenizer and the prompt dataset, evaluated by their assets on what
they just built. They block: a model trained on broken prompts or leaked targets is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg
import pandas as pd

from recsys_assets.llm_data.prompts import PROMPT_PATTERN
from recsys_assets.llm_data.tokenization import round_trips
from recsys_assets.metadata import frame_table
from resources.splits import SplitDates

ROUND_TRIP = "catalog_ids_round_trip"
TEMPLATE = "prompts_follow_template"
TOKEN_BUDGET = "token_budget_respected"
NO_LEAKAGE = "no_test_period_leakage"
EXAMPLES = 5


def tokenizer_check_specs(asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            ROUND_TRIP, asset=asset, blocking=True, description="Every catalog id decodes back to itself after encoding."
        )
    ]


def dataset_check_specs(asset: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            TEMPLATE, asset=asset, blocking=True, description="Every prompt is the template filled in, for its own user."
        ),
        dg.AssetCheckSpec(
            TOKEN_BUDGET,
            asset=asset,
            blocking=True,
            description="Prompt + target fit max_seq_len tokens (serve prompts: beside the tokens reserved for the answer).",
        ),
        dg.AssetCheckSpec(
            NO_LEAKAGE,
            asset=asset,
            blocking=True,
            description="No prompt holds a purchase made on or after its cut-off, and no example's cut-off lies past its "
            "split's (training examples before the validation period, test prompts before the test period).",
        ),
    ]


def _result(name: str, violations: pd.DataFrame, checked: int, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=violations.empty,
        metadata={
            "checked": checked,
            "violations": len(violations),
            **metadata,
            **({"examples": frame_table(violations.head(EXAMPLES))} if len(violations) else {}),
        },
    )


def round_trip_check(tokenizer, catalog: Iterable[int]) -> dg.AssetCheckResult:
    catalog = list(catalog)
    broken = pd.DataFrame({"item_id": round_trips(tokenizer, catalog)})
    if len(broken):
        broken["decoded"] = tokenizer.batch_decode(tokenizer(broken["item_id"].astype(str).tolist(), add_special_tokens=False)["input_ids"])
    return _result(ROUND_TRIP, broken, len(catalog))


def template_check(examples: pd.DataFrame) -> dg.AssetCheckResult:
    parsed = examples["prompt"].str.extract(PROMPT_PATTERN)
    wrong_user = pd.to_numeric(parsed["user_id"], errors="coerce") != examples["user_id"]
    violations = examples.loc[parsed["history"].isna() | wrong_user, ["user_id", "split", "prompt"]]
    return _result(TEMPLATE, violations, len(examples))


def token_budget_check(examples: pd.DataFrame, max_seq_len: int, serve_target_tokens: int) -> dg.AssetCheckResult:
    answer = examples["target_tokens"].where(examples["split"] != "serve", serve_target_tokens)
    total = examples["prompt_tokens"] + answer
    violations = examples.loc[total > max_seq_len, ["user_id", "split", "prompt_tokens", "target_tokens"]]
    return _result(TOKEN_BUDGET, violations, len(examples), max_seq_len=max_seq_len, longest=int(total.max()) if len(total) else 0)


def leakage_check(examples: pd.DataFrame, purchases: pd.DataFrame, dates: SplitDates) -> dg.AssetCheckResult:
    """``purchases``: user_id, item_id, ts of every purchase. A prompt's history id is a leak when the
    user's first purchase of it is on or after the example's cut-off (or never happened)."""
    cutoffs = pd.to_datetime(examples["cutoff"])
    latest_allowed = pd.to_datetime(examples["split"].map(dates.prompt_cutoff))
    late = examples.loc[cutoffs > latest_allowed, ["user_id", "split", "cutoff"]].assign(item_id=pd.NA, reason="cut-off past its split's")

    history = examples["prompt"].str.extract(PROMPT_PATTERN)["history"].fillna("")
    ids = pd.DataFrame({"user_id": examples["user_id"], "split": examples["split"], "cutoff": cutoffs, "item_id": history.str.split(", ")})
    ids = ids.explode("item_id")
    ids = ids[ids["item_id"].fillna("") != ""].astype({"item_id": "int64"})
    first = purchases.groupby(["user_id", "item_id"], as_index=False)["ts"].min()
    joined = ids.merge(first, on=["user_id", "item_id"], how="left")
    leaked = joined.loc[joined["ts"].isna() | (joined["ts"] >= joined["cutoff"]), ["user_id", "split", "cutoff", "item_id"]]
    leaked = leaked.assign(reason="history item bought on or after the cut-off")
    violations = pd.concat([late, leaked], ignore_index=True).astype({"cutoff": "string"})
    return _result(NO_LEAKAGE, violations, len(ids))


def dataset_checks(
    examples: pd.DataFrame, purchases: pd.DataFrame, dates: SplitDates, max_seq_len: int, serve_target_tokens: int
) -> list[dg.AssetCheckResult]:
    return [
        template_check(examples),
        token_budget_check(examples, max_seq_len, serve_target_tokens),
        leakage_check(examples, purchases, dates),
    ]

"""Checks on the LLM data: the tokenizer and the prompt dataset, evaluated by their assets on what
they just built. They block: a model trained on broken prompts or leaked targets is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from recsys_assets.llm_data.history import ByUser
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


@dataclass
class Tally:
    """A check's count over chunks of what it checks: how many, how many broke it, the first few that did."""

    checked: int = 0
    violations: int = 0
    examples: pd.DataFrame | None = None

    def add(self, violations: pd.DataFrame, checked: int) -> Tally:
        self.checked += checked
        self.violations += len(violations)
        if len(violations) and (self.examples is None or len(self.examples) < EXAMPLES):
            self.examples = pd.concat([self.examples, violations.head(EXAMPLES)]).head(EXAMPLES)
        return self

    def result(self, name: str, **metadata) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=name,
            passed=not self.violations,
            metadata={
                "checked": self.checked,
                "violations": self.violations,
                **metadata,
                **({"examples": frame_table(self.examples)} if self.violations else {}),
            },
        )


def round_trip_check(tokenizer, catalog: Iterable[int]) -> dg.AssetCheckResult:
    catalog = list(catalog)
    broken = pd.DataFrame({"item_id": round_trips(tokenizer, catalog)})
    if len(broken):
        broken["decoded"] = tokenizer.batch_decode(tokenizer(broken["item_id"].astype(str).tolist(), add_special_tokens=False)["input_ids"])
    return Tally().add(broken, len(catalog)).result(ROUND_TRIP)


def template_violations(examples: pd.DataFrame) -> pd.DataFrame:
    parsed = examples["prompt"].str.extract(PROMPT_PATTERN)
    wrong_user = pd.to_numeric(parsed["user_id"], errors="coerce") != examples["user_id"]
    return examples.loc[parsed["history"].isna() | wrong_user, ["user_id", "split", "prompt"]]


def total_tokens(examples: pd.DataFrame, serve_target_tokens: int) -> pd.Series:
    """Prompt + answer tokens: a serve prompt's answer is the room reserved for it."""
    return examples["prompt_tokens"] + examples["target_tokens"].where(examples["split"] != "serve", serve_target_tokens)


def budget_violations(examples: pd.DataFrame, max_seq_len: int, serve_target_tokens: int) -> pd.DataFrame:
    return examples.loc[total_tokens(examples, serve_target_tokens) > max_seq_len, ["user_id", "split", "prompt_tokens", "target_tokens"]]


def first_purchases(purchases: pd.DataFrame) -> pd.DataFrame:
    """user_id, item_id, ts of each user's first purchase of each item."""
    return purchases.groupby(["user_id", "item_id"], as_index=False)["ts"].min()


def leakage_violations(examples: pd.DataFrame, first: pd.DataFrame, dates: SplitDates) -> tuple[pd.DataFrame, int]:
    """(violations, history ids checked). ``first``: first purchases of the examples' users at least. A
    prompt's history id is a leak when the user's first purchase of it is on or after the example's
    cut-off (or never happened)."""
    cutoffs = pd.to_datetime(examples["cutoff"])
    latest_allowed = pd.to_datetime(examples["split"].map(dates.prompt_cutoff))
    late = examples.loc[cutoffs > latest_allowed, ["user_id", "split", "cutoff"]].assign(item_id=pd.NA, reason="cut-off past its split's")

    history = examples["prompt"].str.extract(PROMPT_PATTERN)["history"].fillna("")
    ids = pd.DataFrame({"user_id": examples["user_id"], "split": examples["split"], "cutoff": cutoffs, "item_id": history.str.split(", ")})
    ids = ids.explode("item_id")
    ids = ids[ids["item_id"].fillna("") != ""].astype({"item_id": "int64"})
    joined = ids.merge(first, on=["user_id", "item_id"], how="left")
    leaked = joined.loc[joined["ts"].isna() | (joined["ts"] >= joined["cutoff"]), ["user_id", "split", "cutoff", "item_id"]]
    leaked = leaked.assign(reason="history item bought on or after the cut-off")
    return pd.concat([late, leaked], ignore_index=True).astype({"cutoff": "string"}), len(ids)


def template_check(examples: pd.DataFrame) -> dg.AssetCheckResult:
    return Tally().add(template_violations(examples), len(examples)).result(TEMPLATE)


def token_budget_check(examples: pd.DataFrame, max_seq_len: int, serve_target_tokens: int) -> dg.AssetCheckResult:
    tally = Tally().add(budget_violations(examples, max_seq_len, serve_target_tokens), len(examples))
    longest = int(total_tokens(examples, serve_target_tokens).max()) if len(examples) else 0
    return tally.result(TOKEN_BUDGET, max_seq_len=max_seq_len, longest=longest)


def leakage_check(examples: pd.DataFrame, purchases: pd.DataFrame, dates: SplitDates) -> dg.AssetCheckResult:
    """``purchases``: user_id, item_id, ts of every purchase."""
    return Tally().add(*leakage_violations(examples, first_purchases(purchases), dates)).result(NO_LEAKAGE)


class DatasetChecks:
    """The prompt dataset's checks, run on each chunk of examples as it is built."""

    def __init__(self, purchases: pd.DataFrame, dates: SplitDates, max_seq_len: int):
        self.first = ByUser(first_purchases(purchases))
        self.dates, self.max_seq_len = dates, max_seq_len
        self.template, self.budget, self.leakage = Tally(), Tally(), Tally()
        self.longest = 0

    def add(self, chunk: pd.DataFrame, serve_target_tokens: int) -> None:
        if not len(chunk):
            return
        self.template.add(template_violations(chunk), len(chunk))
        self.budget.add(budget_violations(chunk, self.max_seq_len, serve_target_tokens), len(chunk))
        self.longest = max(self.longest, int(total_tokens(chunk, serve_target_tokens).max()))
        first = self.first.between(int(chunk["user_id"].min()), int(chunk["user_id"].max()))
        self.leakage.add(*leakage_violations(chunk, first, self.dates))

    def results(self) -> list[dg.AssetCheckResult]:
        return [
            self.template.result(TEMPLATE),
            self.budget.result(TOKEN_BUDGET, max_seq_len=self.max_seq_len, longest=self.longest),
            self.leakage.result(NO_LEAKAGE),
        ]

"""The time split every layer agrees on.

The last ``test_days`` days are the test period and the ``val_days`` before them the
validation period. Nothing that is trained or fitted (candidates, tokenizer, model,
baselines) may see events on or after the validation start; a val or test example's prompt
sees only what happened before its own period, and its target is what the user bought in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg


@dataclass(frozen=True)
class SplitDates:
    val_start: date
    test_start: date
    end: date  # last day with data

    @property
    def train_cutoff(self) -> date:
        return self.val_start

    def period(self, split: str) -> tuple[date, date]:
        """[first day, day after last) of a split's target period."""
        return {
            "val": (self.val_start, self.test_start),
            "test": (self.test_start, self.end + timedelta(days=1)),
        }[split]

    def prompt_cutoff(self, split: str) -> date:
        """Events strictly before this day may appear in the split's prompts."""
        return {"train": self.val_start, "val": self.val_start, "test": self.test_start, "serve": self.end + timedelta(days=1)}[split]


def split_dates(last_day: date, val_days: int, test_days: int) -> SplitDates:
    test_start = last_day - timedelta(days=test_days - 1)
    return SplitDates(val_start=test_start - timedelta(days=val_days), test_start=test_start, end=last_day)


class EvaluationSplit(dg.ConfigurableResource):
    """Days held out for validation and test, counted back from the newest purchase day."""

    val_days: int = 14
    test_days: int = 14

    def dates(self, conn) -> SplitDates:
        # fetchall, not fetchone: DuckDB keeps a half-read result open and refuses the next query.
        last_day = conn.execute("SELECT max(event_date) FROM staging.fct_purchases").fetchall()[0][0]
        if last_day is None:
            raise ValueError("staging.fct_purchases is empty: materialize ingest and features first.")
        return split_dates(last_day, self.val_days, self.test_days)

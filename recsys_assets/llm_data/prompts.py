"""The single English prompt template of the method, and length control."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import pandas as pd

from gpu_jobs.prompt_format import format_item_ids

TEMPLATE = (
    "Based on the purchase history: [{history}]. What next products will be bought by the user: "
    "{user_id}, geo: {geo}, age: {age}, gender: {gender}, purchasing power: {purchasing_power}?"
)
UNKNOWN = "unknown"

# The template as a pattern, for checking prompts: the history is ids joined by ", " (possibly none).
PROMPT_PATTERN = re.compile(
    "^"
    + re.escape(TEMPLATE)
    .replace(re.escape("{history}"), r"(?P<history>(?:\d+(?:, \d+)*)?)")
    .replace(re.escape("{user_id}"), r"(?P<user_id>\d+)")
    .replace(re.escape("{geo}"), r"(?P<geo>[^,]+)")
    .replace(re.escape("{age}"), r"(?P<age>[^,]+)")
    .replace(re.escape("{gender}"), r"(?P<gender>[^,]+)")
    .replace(re.escape("{purchasing_power}"), r"(?P<purchasing_power>[^?]+)")
    + "$"
)


def _attribute(value) -> str:
    # Nullable integer columns give pd.NA, which would print as "<NA>".
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def build_prompt(history: Sequence[int], user_id: int, geo, age, gender, purchasing_power) -> str:
    """``history`` newest first. A cold-start user (no history) gets an empty list."""
    power = UNKNOWN if purchasing_power is None or math.isnan(purchasing_power) else f"{purchasing_power:.2f}"
    return TEMPLATE.format(
        history=format_item_ids(history),
        user_id=int(user_id),
        geo=_attribute(geo),
        age=_attribute(age),
        gender=_attribute(gender),
        purchasing_power=power,
    )


def fit_history(
    history: Sequence[int], target_tokens: int, max_seq_len: int, count_tokens: Callable[[Sequence[int]], int]
) -> list[int]:
    """The longest newest-first prefix of ``history`` whose prompt fits beside the target.

    ``count_tokens(h)`` is the prompt's length in tokens with history ``h``; prompt length
    grows with the history, so a binary search over the prefix length finds the cut.
    """
    budget = max_seq_len - target_tokens
    low, high = 0, len(history)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(history[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return list(history[:low])

"""How prompts and targets become model text, shared by training and generation.

A training sequence is ``prompt + SEPARATOR + target + eos``; generation feeds
``prompt + SEPARATOR`` and samples until eos. The target is item ids joined by ", ".
"""

from __future__ import annotations

import re

SEPARATOR = " Answer: "
ID_SEPARATOR = ", "
_ID = re.compile(r"\d+")


def generation_prefix(prompt: str) -> str:
    return prompt + SEPARATOR


def training_text(prompt: str, target: str) -> tuple[str, str]:
    """(prefix that gets no loss, completion that does)."""
    return generation_prefix(prompt), target


def format_item_ids(item_ids) -> str:
    return ID_SEPARATOR.join(str(int(i)) for i in item_ids)


def parse_item_ids(completion: str) -> list[int]:
    """Item ids in order of appearance, repeats kept (merging decides what to do with them)."""
    return [int(token) for token in _ID.findall(completion)]

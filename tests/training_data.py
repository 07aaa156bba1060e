"""Stand-ins for the issue-4 outputs (prompt dataset, id tokenizer), in their exact contract.

The training tests need ``datasets/<version>/{train,val,test}.parquet`` + ``dataset.json`` and
``tokenizers/<version>/`` in the artifact store before the llm-data layer exists. These
builders make them from the synthetic marketplace (the same generator and spec the
session fixtures use), without dbt, so a training test does not pay for the feature layer:

- prompt: the DESIGN template over a user's purchase history (newest first) and attributes;
- target: the user's next purchases after the cut, the "basket" the model learns to generate.

The tokenizer groups digits by three (7-9 digit ids -> 3 tokens per id), like the reference
system's digit grouping, with every 1-3 digit group in the vocabulary.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from gpu_jobs.prompt_format import format_item_ids
from synthetic_marketplace.generator import Marketplace

HISTORY_ITEMS = 12
TARGET_ITEMS = 4
SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
# Digit groups, words (with their leading space) and single spaces/punctuation: every
# character of the text lands in exactly one piece, so decoding is exact concatenation.
_PIECES = r", |\d{1,3}| ?[A-Za-z]+| ?[^\sA-Za-z\d]|\s"


def prompt_text(history: list[int], user_id: int, geo, age, gender, power: float) -> str:
    return (
        f"Based on the purchase history: [{format_item_ids(history)}]. What next products will be bought by "
        f"the user: {user_id}, geo: {geo}, age: {age}, gender: {gender}, purchasing power: {power:.2f}?"
    )


def prompt_rows(market: Marketplace) -> pd.DataFrame:
    """One example per user with enough purchases: older history -> the next distinct items."""
    purchases = market.purchases.sort_values(["user_id", "seconds"], kind="stable")
    mean_price = purchases.groupby("user_id")["price"].mean()
    power = mean_price.rank(pct=True)
    users = market.users.set_index("user_id")
    rows = []
    for user_id, items in purchases.groupby("user_id")["item_id"]:
        ordered = list(dict.fromkeys(items.tolist()))  # distinct, in order of first purchase
        if len(ordered) < TARGET_ITEMS + 3:
            continue
        history, target = ordered[:-TARGET_ITEMS], ordered[-TARGET_ITEMS:]
        user = users.loc[user_id]
        gender = "" if pd.isna(user.gender) else int(user.gender)
        rows.append(
            {
                "user_id": int(user_id),
                "prompt": prompt_text(history[::-1][:HISTORY_ITEMS], user_id, user.geo, user.age, gender, power[user_id]),
                "target": format_item_ids(target),
            }
        )
    return pd.DataFrame(rows)


def split_users(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    draw = rng.random(len(rows))
    rows = rows.assign(split=np.where(draw < 0.8, "train", np.where(draw < 0.9, "val", "test")))
    return rows.astype({"user_id": "int64", "split": "str", "prompt": "str", "target": "str"})[
        ["user_id", "split", "prompt", "target"]
    ]


def write_dataset(root: Path, version: str, market: Marketplace) -> Path:
    folder = root / "datasets" / version
    folder.mkdir(parents=True, exist_ok=True)
    table = split_users(prompt_rows(market))
    counts = {}
    for split in ("train", "val", "test"):
        part = table[table.split == split].reset_index(drop=True)
        part.to_parquet(folder / f"{split}.parquet", index=False)
        counts[split] = len(part)
    (folder / "dataset.json").write_text(
        json.dumps({"version": version, "config": {"history_items": HISTORY_ITEMS, "target_items": TARGET_ITEMS}, "counts": counts})
    )
    return folder


def digit_group_tokenizer() -> PreTrainedTokenizerFast:
    digit_groups = ["".join(d) for n in (1, 2, 3) for d in itertools.product("0123456789", repeat=n)]
    words = "Based on the purchase history What next products will be bought by user geo age gender purchasing power Answer"
    word_pieces = [w for word in words.split() for w in (word, " " + word)]
    punctuation = [p for c in "[],.:?" for p in (c, " " + c)] + [", ", " "]
    vocab = list(SPECIAL_TOKENS.values()) + digit_groups + word_pieces + punctuation
    tokenizer = Tokenizer(models.WordLevel({piece: i for i, piece in enumerate(vocab)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECES), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def write_tokenizer(root: Path, version: str) -> Path:
    folder = root / "tokenizers" / version
    digit_group_tokenizer().save_pretrained(folder)
    return folder

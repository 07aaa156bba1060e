"""A small prompt dataset and id tokenizer in the llm-data contract, for the training tests.

The real ``llm_data/prompt_dataset`` asset needs the feature and candidate layers (dbt and
all); the training tests only need its output format. So this builds
``datasets/<version>/{train,val,test}.parquet`` + ``dataset.json`` straight from the synthetic
marketplace (the generator and spec of the session fixtures), with the llm-data layer's own
prompt template and grouped-digit id tokenizer:

- prompt: the template over a user's purchase history (newest first) and attributes;
- target: the user's next distinct purchases after the cut, the basket the model learns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_jobs.prompt_format import format_item_ids, generation_prefix
from recsys_assets.llm_data.prompts import build_prompt
from recsys_assets.llm_data.tokenization import train_id_tokenizer
from synthetic_marketplace.generator import Marketplace

HISTORY_ITEMS = 12
TARGET_ITEMS = 4


def prompt_rows(market: Marketplace) -> pd.DataFrame:
    """One example per user with enough purchases: older history -> the next distinct items."""
    purchases = market.purchases.sort_values(["user_id", "seconds"], kind="stable")
    power = purchases.groupby("user_id")["price"].mean().rank(pct=True)
    users = market.users.set_index("user_id")
    rows = []
    for user_id, items in purchases.groupby("user_id")["item_id"]:
        ordered = list(dict.fromkeys(items.tolist()))  # distinct, in order of first purchase
        if len(ordered) < TARGET_ITEMS + 3:
            continue
        history, target = ordered[:-TARGET_ITEMS], ordered[-TARGET_ITEMS:]
        user = users.loc[user_id]
        gender = None if pd.isna(user.gender) else int(user.gender)
        prompt = build_prompt(history[::-1][:HISTORY_ITEMS], user_id, user.geo, user.age, gender, power[user_id])
        rows.append({"user_id": int(user_id), "prompt": prompt, "target": format_item_ids(target)})
    return pd.DataFrame(rows)


def with_splits(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    draw = np.random.default_rng(seed).random(len(rows))
    rows = rows.assign(split=np.where(draw < 0.8, "train", np.where(draw < 0.9, "val", "test")))
    return rows.astype({"user_id": "int64", "split": "str", "prompt": "str", "target": "str"})[["user_id", "split", "prompt", "target"]]


def write_dataset(root: Path, version: str, market: Marketplace) -> Path:
    folder = root / "datasets" / version
    folder.mkdir(parents=True, exist_ok=True)
    table = with_splits(prompt_rows(market))
    counts = {}
    for split in ("train", "val", "test"):
        part = table[table.split == split].reset_index(drop=True)
        part.to_parquet(folder / f"{split}.parquet", index=False)
        counts[split] = len(part)
    config = {"history_items": HISTORY_ITEMS, "target_items": TARGET_ITEMS}
    (folder / "dataset.json").write_text(json.dumps({"version": version, "config": config, "counts": counts}))
    return folder


def write_tokenizer(root: Path, version: str, dataset: Path) -> Path:
    """The llm-data layer's grouped-digit tokenizer (3 digits a token), trained on the train split.

    Its corpus holds the prompts as training sees them (with the answer separator), so every
    word of the model text is in the vocabulary.
    """
    train = pd.read_parquet(dataset / "train.parquet")
    folder = root / "tokenizers" / version
    corpus = [*map(generation_prefix, train.prompt), *train.target]
    train_id_tokenizer("grouped", corpus).save_pretrained(str(folder))
    return folder

"""The prompt dataset as token ids: completion-only labels, and the padded batches training reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from gpu_jobs.prompt_format import training_text

IGNORE = -100  # label of tokens that get no loss (the prompt, the padding)


@dataclass
class Examples:
    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int = 0  # completions cut at max_length (they lose their tail and eos)
    skipped: int = 0  # prompts that alone fill max_length: nothing left to learn from


def read_split(dataset_dir: Path, split: str) -> pd.DataFrame:
    path = dataset_dir / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the prompt dataset must have train.parquet and val.parquet")
    frame = pd.read_parquet(path)
    missing = {"prompt", "target"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}; found {list(frame.columns)}")
    return frame


def encode(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Examples:
    """Token ids with labels only on the completion (target + eos), never on the prompt.

    The prefix is tokenized on its own, with the tokenizer's special tokens, exactly as
    generation will tokenize ``generation_prefix(prompt)``; so the model learns to continue the
    same ids it is given at inference.
    """
    examples = Examples([], [])
    for prompt, target in zip(frame["prompt"], frame["target"]):
        prefix, completion = training_text(prompt, target)
        prefix_ids = tokenizer(prefix)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(prefix_ids) >= max_length:
            examples.skipped += 1
            continue
        ids = (prefix_ids + completion_ids)[:max_length]
        examples.truncated += len(prefix_ids) + len(completion_ids) > max_length
        examples.input_ids.append(ids)
        examples.labels.append([IGNORE] * len(prefix_ids) + ids[len(prefix_ids) :])
    return examples


def batches(examples: Examples, size: int, pad_id: int, order: list[int]):
    """Right-padded batches in the given order; padding gets no attention and no loss."""
    for start in range(0, len(order), size):
        chosen = order[start : start + size]
        width = max(len(examples.input_ids[i]) for i in chosen)
        ids = torch.full((len(chosen), width), pad_id)
        labels = torch.full((len(chosen), width), IGNORE)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, i in enumerate(chosen):
            n = len(examples.input_ids[i])
            ids[row, :n] = torch.tensor(examples.input_ids[i])
            labels[row, :n] = torch.tensor(examples.labels[i])
            mask[row, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}

"""The prompt dataset's files and summary, filled a chunk of examples at a time (``Builder.chunks``)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys_assets.llm_data.dataset import SPLITS


DATASET_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()), ("split", pa.string()), ("cutoff", pa.date32()), ("prompt", pa.string()),
        ("target", pa.string()), ("target_item_ids", pa.list_(pa.int64())), ("target_sources", pa.list_(pa.string())),
        ("mix_complete", pa.bool_()), ("history_length", pa.int64()), ("prompt_tokens", pa.int64()),
        ("target_tokens", pa.int64()),
    ]
)  # fmt: skip


class SplitFiles:
    """One Parquet file per split in ``folder``, written a chunk (row group) at a time, and a digest of
    what was written (users, prompts, targets): the dataset's content version."""

    def __init__(self, folder: Path, splits: Sequence[str] = SPLITS):
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.writers = {split: pq.ParquetWriter(Path(folder) / f"{split}.parquet", DATASET_SCHEMA) for split in splits}
        self._digest = hashlib.sha1()

    def write(self, chunk: pd.DataFrame) -> None:
        """``chunk``: examples of one split (a chunk of ``Builder.chunks``)."""
        if not len(chunk):
            return
        self.writers[chunk["split"].iloc[0]].write_table(pa.Table.from_pandas(chunk, schema=DATASET_SCHEMA, preserve_index=False))
        self._digest.update(pd.util.hash_pandas_object(chunk[["user_id", "prompt", "target"]], index=False).to_numpy().tobytes())

    @property
    def content_hash(self) -> str:
        return self._digest.hexdigest()[:12]

    def __enter__(self) -> SplitFiles:
        return self

    def __exit__(self, *exc) -> None:
        for writer in self.writers.values():
            writer.close()


@dataclass
class DatasetSummary:
    """What a person checks on a built dataset, gathered chunk by chunk."""

    rows: Counter = field(default_factory=Counter)  # per split
    prompt_tokens: int = 0
    longest: int = 0  # prompt + target tokens
    cold_start_prompts: int = 0
    train_target_tokens: int = 0
    train_sources: Counter = field(default_factory=Counter)
    train_mix_complete: int = 0
    train_users: set = field(default_factory=set)
    train_cutoffs: set = field(default_factory=set)
    preview: pd.DataFrame | None = None  # the first training examples

    def add(self, chunk: pd.DataFrame) -> None:
        if not len(chunk):
            return
        split = chunk["split"].iloc[0]
        self.rows[split] += len(chunk)
        self.prompt_tokens += int(chunk["prompt_tokens"].sum())
        self.longest = max(self.longest, int((chunk["prompt_tokens"] + chunk["target_tokens"]).max()))
        self.cold_start_prompts += int((chunk["history_length"] == 0).sum())
        if split == "train":
            self.train_target_tokens += int(chunk["target_tokens"].sum())
            self.train_sources.update(chunk["target_sources"].explode().dropna())
            self.train_mix_complete += int(chunk["mix_complete"].sum())
            self.train_users.update(chunk["user_id"].tolist())
            self.train_cutoffs.update(str(c) for c in chunk["cutoff"].unique())
            if self.preview is None:
                self.preview = chunk.head(5)[["user_id", "prompt", "target"]]

    @property
    def realized_shares(self) -> dict[str, float]:
        total = sum(self.train_sources.values())
        return {source: round(n / total, 4) for source, n in self.train_sources.most_common()} if total else {}

    @property
    def mean_prompt_tokens(self) -> float:
        return round(self.prompt_tokens / max(sum(self.rows.values()), 1), 1)

    @property
    def mean_train_target_tokens(self) -> float:
        return round(self.train_target_tokens / self.rows["train"], 1) if self.rows["train"] else 0.0

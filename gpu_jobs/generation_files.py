"""The generate job's parquet files: prompts, catalog, purchases and candidate pools in; the ranked lists out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUTPUT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("rank", pa.int32()),
        ("item_id", pa.int64()),
        ("score", pa.float64()),  # log-likelihood (likelihood ranking) or share of chains (chains ranking)
        ("chains_with_item", pa.int32()),
        ("chain_rank", pa.int32()),  # the item's rank by chain agreement; null when only the pool brought it
        ("source", pa.string()),  # "generated", or the candidate pool's source name
    ]
)


@dataclass(frozen=True)
class Users:
    user_ids: list[int]
    prompts: list[str]


def read_columns(path: Path, columns: list[str]) -> pa.Table:
    present = pq.read_schema(path).names
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(present)})")
    return pq.read_table(path, columns=columns)


def read_users(path: Path) -> Users:
    table = read_columns(path, ["user_id", "prompt"])
    user_ids = table.column("user_id").to_pylist()
    prompts = table.column("prompt").to_pylist()
    if len(set(user_ids)) != len(user_ids):
        raise ValueError(f"{path}: user_id must be unique, one prompt per user")
    if None in user_ids or None in prompts:
        raise ValueError(f"{path}: user_id and prompt must not be null")
    # Similar prompt lengths in one batch: the shared prefill covers the batch's shortest
    # prompt, every further prompt token is decoded once per chain.
    order = sorted(range(len(user_ids)), key=lambda i: len(prompts[i]))
    return Users([user_ids[i] for i in order], [prompts[i] for i in order])


def read_catalog(path: Path) -> frozenset[int]:
    return frozenset(read_columns(path, ["item_id"]).column("item_id").to_pylist())


def read_bought(path: Path | None) -> dict[int, set[int]]:
    bought: dict[int, set[int]] = {}
    if path is None:
        return bought
    table = read_columns(path, ["user_id", "item_id"])
    for user_id, item_id in zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist()):
        bought.setdefault(user_id, set()).add(item_id)
    return bought


def read_candidates(path: Path | None) -> dict[int, dict[int, str]]:
    """Per user: pool item -> the first source that brought it (file order)."""
    pools: dict[int, dict[int, str]] = {}
    if path is None:
        return pools
    table = read_columns(path, ["user_id", "item_id", "source"])
    for user_id, item_id, source in zip(*(table.column(c).to_pylist() for c in ("user_id", "item_id", "source"))):
        pools.setdefault(user_id, {}).setdefault(item_id, source)
    return pools


def write_atomically(columns: dict[str, list], path: Path) -> None:
    """Write next to the target and rename: readers see the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(pa.table(columns, schema=OUTPUT_SCHEMA), partial)
    os.replace(partial, path)

"""What a generation reads, the same way for the product's shards and the evaluation's test users:
the prompt dataset (prompts and manifest), the catalog and the users' purchases, the repeat
policy and the candidate pool."""

import json
import time

import dagster as dg
import pandas as pd

from recsys_assets.keys import PROMPT_DATASET
from recsys_assets.serving.candidate_pool import candidate_pool
from resources.artifacts import latest_artifact
from resources.generation import GenerationSettings, repeat_share_sql
from resources.warehouse import Warehouse


def dataset_manifest(context: dg.AssetExecutionContext) -> dict:
    return json.loads((latest_artifact(context.instance, PROMPT_DATASET) / "dataset.json").read_text())


def load_prompts(context: dg.AssetExecutionContext, split: str, users: tuple[int, int] | None = None) -> pd.DataFrame:
    """One split of the prompt dataset; ``users``: only the ids from lo to hi (a shard's). The files are
    written a chunk of users at a time, so a shard reads its own row groups, not a million prompts."""
    filters = [("user_id", ">=", users[0]), ("user_id", "<=", users[1])] if users else None
    return pd.read_parquet(latest_artifact(context.instance, PROMPT_DATASET) / f"{split}.parquet", filters=filters)


def repeat_policy(context: dg.AssetExecutionContext, warehouse: Warehouse, generation: GenerationSettings) -> tuple[bool, str]:
    """Keep or drop already-bought items, from the configuration or from the training period's
    repeat share (the same data for the product and the evaluation, so the same answer)."""
    train_cutoff = dataset_manifest(context)["split_dates"]["val_start"]
    with warehouse.get_connection() as conn:
        share = float(conn.execute(repeat_share_sql(), [train_cutoff]).fetchall()[0][0])
    keep, reason = generation.keep_bought(share)
    context.log.info(f"Repeat policy: {reason}")
    return keep, reason


def catalog_and_bought(warehouse: Warehouse, users_filter: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with warehouse.get_connection() as conn:
        catalog = conn.execute("SELECT item_id FROM staging.stg_items").df()
        bought = conn.execute(f"SELECT DISTINCT user_id, item_id FROM staging.fct_purchases WHERE {users_filter}").df()
    return catalog, bought


def generation_pool(
    context: dg.AssetExecutionContext, generation: GenerationSettings, load_inputs, excluded: pd.DataFrame | None
) -> pd.DataFrame:
    """The candidate pool from ``load_inputs()`` (item models and the users' histories, read only when the
    likelihood ranking needs them), topped up with popular items to max_items servable ones (``excluded``:
    what the repeat policy never serves)."""
    if generation.ranking != "likelihood":
        return pd.DataFrame(columns=["user_id", "item_id", "source"])
    models, inputs = load_inputs()
    started = time.perf_counter()
    pool = candidate_pool(models, inputs, generation.pool_sources, generation.pool_items_per_source, generation.max_items, excluded)
    users = max(len(inputs.users), 1)
    context.log.info(f"Candidate pool: {len(pool) / users:.0f} items per user from {', '.join(generation.pool_sources)} "
                     f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return pool

"""The candidate pool's item models, fitted once per data version: item popularity and
item-to-item neighbourhoods over every purchase. Each serving shard reads them and only its own
users' purchases, so a shard's cost does not grow with the marketplace (before, every shard read
all purchases and refitted both)."""

import hashlib
import time

import dagster as dg

from gpu_jobs.model_folder import publish
from recsys_assets.keys import FCT_PURCHASES, FCT_PURCHASES_TABLE, POOL_ITEM_MODELS
from recsys_assets.metadata import duration
from recsys_assets.serving.candidate_pool import POOL_NEIGHBOURS, fit_pool_item_models, save_item_models
from resources.artifacts import ArtifactStore
from resources.warehouse import Warehouse


@dg.asset(
    key=POOL_ITEM_MODELS,
    group_name="llm_data",
    owners=["team:ml"],
    kinds={"scipy", "parquet"},
    deps=[FCT_PURCHASES],
    description=(
        "The item-level half of the LLM's candidate pool, fitted on every purchase: distinct buyers per item "
        f"(the popularity source and fill) and each item's {POOL_NEIGHBOURS} most co-purchased items (cosine of "
        "buyer sets: the item_to_item source). Serving shards rank from it with their own users' purchases only."
    ),
)
def pool_item_models(context: dg.AssetExecutionContext, warehouse: Warehouse, artifacts: ArtifactStore) -> dg.MaterializeResult:
    started = time.perf_counter()
    with warehouse.get_connection() as conn:
        # Both models read distinct (user, item) pairs: repeats and timestamps change neither.
        pairs = conn.execute(f"SELECT DISTINCT user_id, item_id FROM {FCT_PURCHASES_TABLE}").df()
    models = fit_pool_item_models(pairs)
    staging = artifacts.folder("pool_item_models", f".building-{context.run_id}")
    save_item_models(models, staging)
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(staging.iterdir()))).hexdigest()[:12]
    folder = artifacts.path("pool_item_models", digest)
    publish(staging, folder)
    context.log.info(f"Pool item models: {len(models.popularity):,} items from {len(pairs):,} user-item pairs")
    return dg.MaterializeResult(
        metadata={
            "path": str(folder),
            "items": len(models.popularity),
            "user_item_pairs": len(pairs),
            "neighbour_pairs": int(models.similarity.nnz),
            "fit_time": duration(time.perf_counter() - started),
        }
    )

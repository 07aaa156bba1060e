"""A deliberately broken challenger, run against a finished ``recsys run`` (``python -m tests.quality_drill``).

Copies the newest prompt dataset with every target id sent through a random permutation of
the catalog (the prompts stay true, the answers become noise), trains a model on it through
the real model asset, evaluates it like any new model, lets the promotion gate decide,
regenerates one shard and evaluates the alert sensor once. Prints one JSON line with what
happened; tests/test_quality.py asserts on it. Runs in its own process with RECSYS_HOME and
DAGSTER_HOME of the finished run, like a second run by the same team.
"""

from __future__ import annotations

import json
import shutil
import sys

import dagster as dg
import numpy as np
import pandas as pd

from gpu_jobs.prompt_format import format_item_ids
from partitions import user_shards
from recsys_assets.keys import MODEL_PROMOTION
from resources.artifacts import latest_artifact, latest_metadata

PROMPT_DATASET = dg.AssetKey(["llm_data", "prompt_dataset"])
RETRAINED = [
    dg.AssetKey(["model", "fine_tuned_model"]),
    dg.AssetKey(["model", "inference_engine"]),
    dg.AssetKey(["evaluation", "llm_test_recommendations"]),
    dg.AssetKey(["evaluation", "recommendation_metrics"]),
    MODEL_PROMOTION,
]


def shuffle_targets(dataset: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every target id replaced by its image under one random permutation of the ids seen."""
    ids = np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in dataset["target_item_ids"]] or [np.empty(0, np.int64)]))
    image = dict(zip(ids.tolist(), np.random.default_rng(seed).permutation(ids).tolist()))
    shuffled = [[image[int(i)] for i in items] for items in dataset["target_item_ids"]]
    return dataset.assign(target_item_ids=shuffled, target=[format_item_ids(items) for items in shuffled])


def broken_dataset(instance: dg.DagsterInstance) -> str:
    source = latest_artifact(instance, PROMPT_DATASET)
    target = source.parent / f"{source.name}-shuffled"
    shutil.copytree(source, target, dirs_exist_ok=True)
    for split in ("train", "val"):
        frame = pd.read_parquet(source / f"{split}.parquet")
        shuffle_targets(frame, seed=1).to_parquet(target / f"{split}.parquet", index=False)
    return str(target)


def main() -> None:
    from recsys_assets.definitions import defs
    from recsys_assets.sensors import alert_sensor

    instance = dg.DagsterInstance.get()
    champion = latest_metadata(instance, MODEL_PROMOTION)["model_version"]
    assets = [*defs.assets, *(defs.asset_checks or [])]
    # A third of the champion's steps: noise does not get better with more of it, and the drill
    # only has to show that the gate refuses what comes out.
    training = {"dataset_path": broken_dataset(instance), "max_steps": 30}
    config = {"ops": {"model__fine_tuned_model": {"config": training}}}
    result = dg.materialize(
        assets, selection=RETRAINED, instance=instance, resources=defs.resources, run_config=config, raise_on_error=False
    )
    promotion = latest_metadata(instance, MODEL_PROMOTION)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    shard = sorted(instance.get_dynamic_partitions(user_shards.name))[0]
    sharded = dg.AssetSelection.assets(dg.AssetKey(["serving", "user_recommendations"]))
    served = dg.materialize(assets, selection=sharded, partition_key=shard, instance=instance, resources=defs.resources)

    context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def(), resources={"notifier": defs.resources["notifier"]})
    sensor_result = alert_sensor(context)
    print(
        json.dumps(
            {
                "run_success": result.success,
                "champion_before": champion,
                "challenger": promotion["challenger_version"],
                "serving_after": promotion["model_version"],
                "decision": promotion["decision"],
                "reasons": promotion["reasons"],
                "checks": checks,
                "shard": shard,
                "shard_success": served.success,
                "alerts_sent": sensor_result.skip_reason is None,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())

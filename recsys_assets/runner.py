"""Materialize the whole graph headlessly, the way `recsys run` and the tests do.

The stage jobs of recsys_assets/jobs.py, in order: ``ingest_and_features`` as one run whose
daily assets backfill all days found in the landing folder (single-run backfill policies),
``train_and_evaluate``, then ``serve_shards`` once per user-range shard (new shards are
registered first for users outside the existing ones), then ``marts``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dagster as dg

# Internal Dagster APIs, pinned with dagster itself: a run created with the code location's origin
# and executed here, the way `dagster api execute_run` does for runs launched from the UI.
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from partitions import daily_partitions, user_shards
from recsys_assets.jobs import STAGE_JOBS, ingest_and_features, serve_shards
from recsys_assets.progress import Stage, progress_logger
from partitions.user_shards import plan_new_shards
from resources.landing import LandingDataError

# One line per asset message, warning or failure (recsys_assets/progress.py), not every framework event.
PROGRESS_LOGS = {"loggers": {"progress": {}}}
# The code location of workspace.yaml. Runs carry it as their origin, as runs launched from the UI
# do: the Overview timeline lists only runs of the location's jobs.
CODE_LOCATION = RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="recsys_assets.definitions"), location_name="recsys_platform"),
    "__repository__",
)


def day_range_tags(days: list[date]) -> dict[str, str]:
    first_partition = daily_partitions.get_first_partition_key()
    if days[0].isoformat() < first_partition:
        raise LandingDataError(
            f"The landing data starts on {days[0]}, before the first daily partition {first_partition}. "
            f"Set RECSYS_FIRST_DAY={days[0]} (or earlier) and reload."
        )
    return {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }


def register_shards(instance: dg.DagsterInstance, warehouse) -> list[str]:
    """Add shards for users outside the registered ones; returns all shard keys."""
    existing = list(instance.get_dynamic_partitions(user_shards.name))
    with warehouse.get_connection() as conn:
        user_ids = [user_id for (user_id,) in conn.execute("SELECT user_id FROM staging.stg_users").fetchall()]
    new = [shard.key for shard in plan_new_shards(user_ids, existing)]
    if new:
        instance.add_dynamic_partitions(user_shards.name, new)
    return sorted([*existing, *new])


def materialize_everything(
    defs: dg.Definitions,
    instance: dg.DagsterInstance | None = None,
    log: Callable[[str], None] = print,
) -> list[dg.ExecutionResult]:
    """Runs the stage jobs (recsys_assets/jobs.py) that have assets in ``defs``, in order."""
    instance = instance or dg.DagsterInstance.get()
    resources = defs.resources
    days = resources["landing"].landing_days()
    if not days:
        raise LandingDataError(f"No event days found in the landing folder {resources['landing'].root}.")
    # In this process, one step after the other (a run of the UI would use the instance's executor).
    stage_defs = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, resources=resources, jobs=STAGE_JOBS,
        executor=dg.in_process_executor, loggers={"progress": progress_logger},
    )  # fmt: skip
    graph = stage_defs.resolve_asset_graph()

    def run(job: dg.UnresolvedAssetJobDefinition, detail: str = "", tags: dict[str, str] | None = None) -> dg.ExecutionResult:
        stage = Stage(log, job.name, detail)
        job_def = stage_defs.resolve_job_def(job.name)
        dagster_run = instance.create_run_for_job(
            job_def, run_config=PROGRESS_LOGS, tags={**job_def.tags, **(tags or {})}, remote_job_origin=CODE_LOCATION.get_job_origin(job.name)
        )
        result = execute_run(InMemoryJob(job_def), dagster_run, instance)
        stage.done(result)
        return result

    results = []
    for job in STAGE_JOBS:
        if not job.selection.resolve(graph):
            continue
        if job is ingest_and_features:
            results.append(run(job, f"every landing day, {days[0]} .. {days[-1]}", day_range_tags(days)))
        elif job is serve_shards:
            shards = register_shards(instance, resources["warehouse"])
            for number, key in enumerate(shards, start=1):
                results.append(run(job, f"shard {number}/{len(shards)} {key}", {"dagster/partition": key}))
        else:
            results.append(run(job))
    return results

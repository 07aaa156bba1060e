"""The named jobs: every run that `recsys run` or a sensor launches belongs to one of them,
so the runs list, the Overview timeline and the run-failure alerts say which stage ran.

A full materialization is four stages, because a run holds one kind of partition:

    ingest_and_features  raw -> dbt -> candidates -> llm_data, daily assets over every landing day
    train_and_evaluate   the model, its engine, the evaluation and the promotion gate (unpartitioned)
    serve_shards         one run per user-range shard (in production: one GPU pod per shard)
    marts                what product teams read, built from every shard's recommendations

``ingest_day`` is the landing sensor's job and ``experiments`` is launched by hand. Runs that
the automation sensors launch are named by Dagster (its automation has no named jobs); they
carry the layers' retry tags instead.
"""

import warnings

import dagster as dg

from recsys_assets.automation import GPU_RETRIES, WAREHOUSE_RETRIES
from recsys_assets.evaluation.experiments import experiments_job
from resources.landing import EVENT_TABLES, SNAPSHOT_TABLES

EVENT_KEYS = [dg.AssetKey(["raw", table]) for table in EVENT_TABLES]
SNAPSHOT_KEYS = {table: dg.AssetKey(["raw", table]) for table in SNAPSHOT_TABLES}

ingest_and_features = dg.define_asset_job(
    "ingest_and_features",
    selection=dg.AssetSelection.groups("ingest", "features", "candidates", "llm_data"),
    tags=WAREHOUSE_RETRIES.tags,
    description="Ingest of the landing days, the dbt features, the candidate layer and the prompt dataset.",
)
train_and_evaluate = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.groups("model", "evaluation"),
    tags=GPU_RETRIES.tags,
    description="Fine-tunes the model, builds its inference engine, scores it against the baselines "
    "and decides whether it is promoted to serving.",
)
# Dagster warns that serving's assets have different backfill policies: shard_users backfills
# many shards in one run (cheap SQL), user_recommendations one shard a run (a GPU job each). A
# backfill of this job runs a shard a run, which is what serving needs: the warning says so.
warnings.filterwarnings("ignore", message="Asset job serve_shards materializes assets with varying BackfillPolicies")
serve_shards = dg.define_asset_job(
    "serve_shards",
    selection=dg.AssetSelection.groups("serving"),
    tags=GPU_RETRIES.tags,
    description="Recommendations for one user-range shard (select the shard as the partition).",
)
marts = dg.define_asset_job(
    "marts",
    selection=dg.AssetSelection.groups("marts"),
    tags=WAREHOUSE_RETRIES.tags,
    description="The tables product teams read (homepage feed, recommendations by category, daily summary).",
)
# In the order `recsys run` runs them.
STAGE_JOBS = [ingest_and_features, train_and_evaluate, serve_shards, marts]

# One day's ingest: small loads that the warehouse pool runs one at a time anyway, so one
# process (one pod in production) for the run instead of one per step.
ingest_day = dg.define_asset_job(
    "ingest_day",
    selection=dg.AssetSelection.assets(*SNAPSHOT_KEYS.values(), *EVENT_KEYS),
    executor_def=dg.in_process_executor,
    tags=WAREHOUSE_RETRIES.tags,
    description="Ingest of one event day (and the snapshots, when their files changed); started by landing_sensor.",
)

jobs = [*STAGE_JOBS, ingest_day, experiments_job]

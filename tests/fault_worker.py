"""One warehouse write in its own process, for tests/test_faults.py to kill.

    python -m tests.fault_worker <layer> [--first DAY --last DAY] [--top N]

Layers are real Dagster materializations on ``$RECSYS_HOME`` (the instance is ``$DAGSTER_HOME``
when set, else ephemeral), except ``serving_shard``: the serving layer's shard writer
(``replace_shard_rows``) at the function level, with the popularity lists a shard serves
before a model passes the gate, so the fault test needs no trained model.
"""

from __future__ import annotations

import argparse
import os

import dagster as dg

LAYERS = ("ingest", "dbt", "dbt_daily", "candidates", "serving_shard", "marts")


def _assets(layer: str) -> tuple[list, dg.AssetSelection]:
    if layer == "ingest":
        from recsys_assets.ingest.assets import ingest_assets

        return ingest_assets, dg.AssetSelection.all()
    if layer in ("dbt", "dbt_daily"):  # dbt: every feature model; dbt_daily: the daily ones (fct_purchases)
        from recsys_assets.features.assets import dbt_daily_purchases, feature_assets

        selection = dg.AssetSelection.assets(dbt_daily_purchases) if layer == "dbt_daily" else dg.AssetSelection.all()
        return feature_assets, selection
    if layer == "candidates":
        from recsys_assets.candidates.assets import item_vectors

        return [item_vectors], dg.AssetSelection.all()
    from recsys_assets.marts.assets import dbt_marts

    return [dbt_marts], dg.AssetSelection.all()


def materialize(layer: str, first: str | None, last: str | None) -> None:
    from resources import default_resources

    assets, selection = _assets(layer)
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last} if first else None
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, selection=selection, resources=default_resources(), instance=instance, tags=tags)
    assert result.success


def write_shards(top: int) -> None:
    """Every shard's popularity lists, cut to ``top`` per user, through the serving layer's shard writer."""
    from partitions.user_shards import plan_new_shards
    from recsys_assets.serving.shard_writer import replace_shard_rows
    from resources.warehouse import warehouse_resource

    with warehouse_resource().get_connection() as conn:
        users = [user_id for (user_id,) in conn.execute("SELECT user_id FROM staging.stg_users").fetchall()]
        for shard in plan_new_shards(users, []):
            lists = conn.execute(
                f"""
                WITH popular AS (
                    SELECT item_id, count(DISTINCT user_id) AS buyers FROM staging.fct_purchases GROUP BY 1
                    ORDER BY buyers DESC, item_id LIMIT {top}
                )
                SELECT u.user_id, (row_number() OVER (PARTITION BY u.user_id ORDER BY p.buyers DESC, p.item_id))::INTEGER AS rank,
                       p.item_id, p.buyers::DOUBLE AS score
                FROM staging.stg_users u CROSS JOIN popular p WHERE {shard.sql_filter("u.user_id")}
                """
            ).df()
            replace_shard_rows(conn, lists, shard.sql_filter(), "fallback:global_popularity")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("layer", choices=LAYERS)
    parser.add_argument("--first")
    parser.add_argument("--last")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if args.layer == "serving_shard":
        write_shards(args.top)
    else:
        materialize(args.layer, args.first, args.last)
    print("FAULT_WORKER_DONE", flush=True)


if __name__ == "__main__":
    main()

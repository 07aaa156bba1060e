"""The shard roster: which users each user-range shard serves, one warehouse table for all layers.

``serving.shard_users`` maps every user to exactly one shard (partitions/user_shards.py). A GPU
job per shard reads its users from here, and product teams can tell which job served a user.
A shard is replaced inside one transaction, so a shard is never half-written and re-running
it replaces rather than appends.
"""

import time

import dagster as dg

from partitions import user_shards
from partitions.user_shards import shard_range
from recsys_assets.keys import SHARD_USERS, STG_USERS
from resources.warehouse import WAREHOUSE_POOL, Warehouse, transaction


def _replace_shard(conn, key: str) -> int:
    shard = shard_range(key)
    with transaction(conn):
        conn.execute("DELETE FROM serving.shard_users WHERE shard_key = ?", [key])
        conn.execute(
            f"INSERT INTO serving.shard_users SELECT ?, user_id, now() FROM staging.stg_users "
            f"WHERE {shard.sql_filter()} ORDER BY user_id",
            [key],
        )
    return conn.execute("SELECT count(*) FROM serving.shard_users WHERE shard_key = ?", [key]).fetchone()[0]


@dg.asset(
    key=SHARD_USERS,
    group_name="serving",
    owners=["team:data-platform"],
    kinds={"duckdb", "sql"},
    description="The users of each user-range shard (serving.shard_users: shard_key, user_id, assigned_at); "
    "every user in exactly one shard. A shard is replaced atomically.",
    partitions_def=user_shards,
    deps=[STG_USERS],
    pool=WAREHOUSE_POOL,
    # A backfill of many shards is cheap SQL: one run, a transaction per shard.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def shard_users(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    started = time.perf_counter()
    with warehouse.get_connection() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS serving")
        conn.execute("CREATE TABLE IF NOT EXISTS serving.shard_users (shard_key VARCHAR, user_id BIGINT, assigned_at TIMESTAMP)")
        users = {key: _replace_shard(conn, key) for key in context.partition_keys}
    context.log.info(f"{len(users)} shard(s) written: {sum(users.values())} users")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(users.values()),
            "dagster/table_name": "serving.shard_users",
            "users_by_shard": dg.MetadataValue.json(users),
            "empty_shards": sum(1 for count in users.values() if count == 0),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )

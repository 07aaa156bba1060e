"""The product table's shard writer: one shard's rows of marts.user_recommendations, replaced at once.

A shard owns a user-id range, so deleting the range and inserting the new lists in one
transaction leaves readers with the old lists or the new ones, never a half-written shard, and
a rerun replaces rather than appends.
"""

import pandas as pd

from recsys_assets.keys import USER_RECOMMENDATIONS_TABLE
from resources.warehouse import transaction


def replace_shard_rows(conn, recommendations: pd.DataFrame, shard_filter: str, model_version: str) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {USER_RECOMMENDATIONS_TABLE} (user_id BIGINT, rank INTEGER, item_id BIGINT, "
        "score DOUBLE, model_version VARCHAR, generated_at TIMESTAMP)"
    )
    conn.register("incoming", recommendations)
    try:
        with transaction(conn):
            conn.execute(f"DELETE FROM {USER_RECOMMENDATIONS_TABLE} WHERE {shard_filter}")
            conn.execute(
                f"INSERT INTO {USER_RECOMMENDATIONS_TABLE} SELECT user_id, rank, item_id, score, ?, now() FROM incoming "
                "ORDER BY user_id, rank",
                [model_version],
            )
    finally:
        conn.unregister("incoming")

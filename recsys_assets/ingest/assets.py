"""Ingest layer: landing files -> validated ``raw.*`` tables in the warehouse.

Users and items are snapshots (replaced whole); purchases, wishlist and cart events are
partitioned by day (a partition replaces exactly its day). A backfill of many days runs as
one run that loads the days one transaction at a time.
"""


import time
from datetime import date

import dagster as dg

from partitions import daily_partitions
from recsys_assets.ingest.loading import LoadResult, ensure_raw_schema, load_event_day, load_snapshot
from resources.landing import EVENT_TABLES, SNAPSHOT_TABLES, LandingZone
from resources.warehouse import WAREHOUSE_POOL, Warehouse

OWNERS = ["team:data-platform"]
# Share of quarantined rows above which the ingest check warns: a few bad rows are normal
# in marketplace exports, a sudden jump usually means a broken export job upstream.
QUARANTINE_WARN_SHARE = 0.05

_DESCRIPTIONS = {
    "users": "User attributes snapshot (gender, age, geo), validated; bad rows in raw.quarantine.",
    "items": "Item catalog snapshot (category, price), validated; bad rows in raw.quarantine.",
    "purchases": "Purchase events by day (user, item, ts, price, quantity), validated against the snapshots.",
    "wishlist": "Wishlist-add events by day, validated against the snapshots (optional in the landing data).",
    "cart": "Add-to-cart events by day, validated against the snapshots (optional in the landing data).",
}


def _quarantine_check(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "quarantine_share",
        asset=dg.AssetKey(["raw", table]),
        description=f"Warns when more than {QUARANTINE_WARN_SHARE:.0%} of the rows read were quarantined.",
    )


def _materialization(results: list[LoadResult], table: str, conn, started: float, where: str) -> dg.MaterializeResult:
    read = sum(r.rows_read for r in results)
    quarantined = sum(r.rows_quarantined for r in results)
    by_rule: dict[str, int] = {}
    for result in results:
        for rule, count in result.quarantined_by_rule.items():
            by_rule[rule] = by_rule.get(rule, 0) + count
    preview = conn.execute(f"SELECT * EXCLUDE (_loaded_at) FROM raw.{table} WHERE {where} LIMIT 5").df()
    share = quarantined / read if read else 0.0
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r.rows_loaded for r in results),
            "dagster/table_name": f"raw.{table}",
            "rows_read": read,
            "rows_quarantined": quarantined,
            "quarantined_by_rule": dg.MetadataValue.json(by_rule),
            "files_read": sum(r.files for r in results),
            "partitions_loaded": len(results),
            "seconds": round(time.perf_counter() - started, 2),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="quarantine_share",
                passed=share <= QUARANTINE_WARN_SHARE,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"share": round(share, 4), "rows_quarantined": quarantined, "rows_read": read},
            )
        ],
    )


def build_snapshot_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", table],
        group_name="ingest",
        description=_DESCRIPTIONS[table],
        kinds={"duckdb", "parquet"},
        owners=OWNERS,
        pool=WAREHOUSE_POOL,
        check_specs=[_quarantine_check(table)],
    )
    def snapshot(context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> dg.MaterializeResult:
        started = time.perf_counter()
        with warehouse.get_connection() as conn:
            ensure_raw_schema(conn)
            result = load_snapshot(conn, table, landing.files(table))
            context.log.info(f"raw.{table}: {result.rows_loaded} rows loaded, {result.rows_quarantined} quarantined")
            return _materialization([result], table, conn, started, where="true")

    return snapshot


def build_event_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=["raw", table],
        group_name="ingest",
        description=_DESCRIPTIONS[table],
        kinds={"duckdb", "parquet"},
        owners=OWNERS,
        pool=WAREHOUSE_POOL,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(["raw", snapshot]) for snapshot in SNAPSHOT_TABLES],
        check_specs=[_quarantine_check(table)],
    )
    def events(context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> dg.MaterializeResult:
        started = time.perf_counter()
        days = [date.fromisoformat(key) for key in context.partition_keys]
        results = []
        with warehouse.get_connection() as conn:
            ensure_raw_schema(conn)
            for done, day in enumerate(days, start=1):
                results.append(load_event_day(conn, table, landing.files_for_day(table, day), day))
                if done == len(days) or done % max(1, len(days) // 10) == 0:
                    context.log.info(f"raw.{table}: {done}/{len(days)} days loaded (last: {day})")
            where = f"event_date BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}'"
            return _materialization(results, table, conn, started, where=where)

    return events


snapshot_assets = [build_snapshot_asset(table) for table in SNAPSHOT_TABLES]
event_assets = [build_event_asset(table) for table in EVENT_TABLES]
ingest_assets = [*snapshot_assets, *event_assets]

"""Ingest layer: landing files -> validated ``raw.*`` tables in the warehouse.

Users and items are snapshots (replaced whole); purchases, wishlist and cart events are
partitioned by day (a partition replaces exactly its day). A backfill of many days runs as
one run that loads the days one transaction at a time. A load that would shrink a table or a
day by surprise fails before it changes anything (``allow_shrink`` accepts it).
"""


import time
from datetime import date

import dagster as dg
from pydantic import Field

from partitions import daily_partitions
from recsys_assets.ingest.loading import LoadResult, ensure_raw_schema, load_event_day, load_snapshot
from recsys_assets.ingest.shrink import ShrinkGuard
from recsys_assets.metadata import frame_table
from resources.landing import EVENT_TABLES, SKIPPED_LISTED, SNAPSHOT_TABLES, LandingZone
from resources.warehouse import WAREHOUSE_POOL, Warehouse

OWNERS = ["team:data-platform"]
# Share of quarantined rows above which the ingest check warns: a few bad rows are normal
# in marketplace exports, a sudden jump usually means a broken export job upstream.
QUARANTINE_WARN_SHARE = 0.05
# Above this share the export is broken rather than noisy: the check fails as an error.
QUARANTINE_ERROR_SHARE = 0.5


class IngestConfig(dg.Config):
    allow_shrink: bool = Field(
        default=False,
        description="Accept a replace that empties the source or loses more than max_shrink_share of the valid rows "
        "(a deliberate shrink); it is logged and named in the metadata.",
    )
    max_shrink_share: float = Field(
        default=0.2, ge=0.0, le=1.0, description="Largest share of a table's or a day's valid rows a replace may lose."
    )

    def guard(self, landing: LandingZone) -> ShrinkGuard:
        return ShrinkGuard(self.allow_shrink, self.max_shrink_share, tuple(landing.skipped_files()))

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
        description=f"Warns when more than {QUARANTINE_WARN_SHARE:.0%} of the rows read were quarantined, "
        f"an error above {QUARANTINE_ERROR_SHARE:.0%}.",
    )


def _skipped_metadata(landing: LandingZone) -> dg.MetadataValue:
    skipped = landing.skipped_files()
    listed = dict(list(skipped.items())[:SKIPPED_LISTED])
    if len(skipped) > SKIPPED_LISTED:
        listed["..."] = f"{len(skipped) - SKIPPED_LISTED} more"
    return dg.MetadataValue.json(listed)


def _log_load(context: dg.AssetExecutionContext, result: LoadResult) -> None:
    if result.shrink_accepted:
        context.log.warning(f"raw.{result.table} {result.partition_key}: shrink accepted (allow_shrink): {result.shrink_accepted}")
    for column, how in result.coerced_columns.items():
        context.log.info(f"{column}: coerced {how}")


def _materialization(
    results: list[LoadResult], table: str, conn, started: float, where: str, landing: LandingZone
) -> dg.MaterializeResult:
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
            "skipped_files": _skipped_metadata(landing),
            "coerced_columns": dg.MetadataValue.json({k: v for r in results for k, v in r.coerced_columns.items()}),
            "shrinks_accepted": dg.MetadataValue.json({r.partition_key: r.shrink_accepted for r in results if r.shrink_accepted}),
            "source_timezone": landing.zone,
            "partitions_loaded": len(results),
            "seconds": round(time.perf_counter() - started, 2),
            "preview": frame_table(preview),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="quarantine_share",
                passed=share <= QUARANTINE_WARN_SHARE,
                severity=dg.AssetCheckSeverity.ERROR if share > QUARANTINE_ERROR_SHARE else dg.AssetCheckSeverity.WARN,
                metadata={"share": round(share, 4), "rows_quarantined": quarantined, "rows_read": read},
            )
        ],
    )


def _raw_table(table: str) -> dict:
    """What every raw table's asset declares: its key, docs, owners, pool and quarantine check."""
    return {"key": ["raw", table], "group_name": "ingest", "description": _DESCRIPTIONS[table], "kinds": {"duckdb", "parquet"},
            "owners": OWNERS, "pool": WAREHOUSE_POOL, "check_specs": [_quarantine_check(table)]}  # fmt: skip


def build_snapshot_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(**_raw_table(table))
    def snapshot(
        context: dg.AssetExecutionContext, config: IngestConfig, warehouse: Warehouse, landing: LandingZone
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        with warehouse.get_connection() as conn:
            ensure_raw_schema(conn)
            result = load_snapshot(conn, table, landing.files(table), landing.zone, config.guard(landing))
            _log_load(context, result)
            context.log.info(f"raw.{table}: {result.rows_loaded} rows loaded, {result.rows_quarantined} quarantined")
            return _materialization([result], table, conn, started, where="true", landing=landing)

    return snapshot


def build_event_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        **_raw_table(table),
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(["raw", snapshot]) for snapshot in SNAPSHOT_TABLES],
    )
    def events(
        context: dg.AssetExecutionContext, config: IngestConfig, warehouse: Warehouse, landing: LandingZone
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        days = [date.fromisoformat(key) for key in context.partition_keys]
        first, last = (date.fromisoformat(key) for key in (daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()))
        guard, results = config.guard(landing), []
        with warehouse.get_connection() as conn:
            ensure_raw_schema(conn)
            for done, day in enumerate(days, start=1):
                # The run's last load re-quarantines the rows of days outside the partitions:
                # once per run, whichever days it loads.
                owns_outside = done == len(days)
                files = landing.files_for_day(table, day) + (landing.files_outside(table, first, last) if owns_outside else [])
                results.append(load_event_day(conn, table, files, day, (first, last), landing.zone, guard, owns_outside))
                _log_load(context, results[-1])
                if done == len(days) or done % max(1, len(days) // 10) == 0:
                    context.log.info(f"raw.{table}: {done}/{len(days)} days loaded (last: {day})")
            where = f"event_date BETWEEN DATE '{days[0]}' AND DATE '{days[-1]}'"
            return _materialization(results, table, conn, started, where=where, landing=landing)

    return events


snapshot_assets = [build_snapshot_asset(table) for table in SNAPSHOT_TABLES]
event_assets = [build_event_asset(table) for table in EVENT_TABLES]
ingest_assets = [*snapshot_assets, *event_assets]

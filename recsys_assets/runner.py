"""Materialize the whole graph headlessly, the way `recsys run` and the tests do.

Partitioned assets run as single-run backfills over the days found in the landing folder
(one run covers the whole range, as the backfill policies allow); unpartitioned assets run
in the same run downstream of them.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from partitions import daily_partitions
from resources.landing import EVENT_TABLES, LandingDataError, LandingZone


def landing_days(landing: LandingZone) -> list[date]:
    return sorted({day for table in EVENT_TABLES for day in landing.event_days(table)})


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


def materialize_everything(
    defs: dg.Definitions | None = None, instance: dg.DagsterInstance | None = None
) -> dg.ExecuteInProcessResult:
    if defs is None:
        from recsys_assets.definitions import defs
    resources = defs.resources
    days = landing_days(resources["landing"])
    if not days:
        raise LandingDataError(f"No event days found in the landing folder {resources['landing'].root}.")
    return dg.materialize(
        list(defs.assets),
        instance=instance or dg.DagsterInstance.get(),
        resources=resources,
        tags=day_range_tags(days),
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )

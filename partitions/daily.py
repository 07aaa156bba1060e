"""Daily partitions for event data.

Partition keys must not move when the code location reloads, so the first day is decided once:

1. ``RECSYS_FIRST_DAY`` when set;
2. else the day recorded in ``$RECSYS_HOME/first_day`` by an earlier load;
3. else the first event day in the landing folder, which is then recorded there (so a later
   export that drops its oldest days keeps the keys), and said on stderr;
4. else (nothing has landed yet) 2026-01-01, not recorded, so the first data decides later.

Ingest refuses days before the first one with a message that says how to move it.
"""

import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg

from resources import settings

DEFAULT_FIRST_DAY = "2026-01-01"


def resolve_first_day(configured: str | None, record: Path, first_landing_day: Callable[[], date | None]) -> str:
    """The first daily partition (see the module docstring for the order); records a day it derives."""
    if configured:
        return configured
    if record.exists():
        return record.read_text().strip()
    first = first_landing_day()
    if first is None:
        return DEFAULT_FIRST_DAY
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    partial.write_text(first.isoformat())
    partial.replace(record)  # atomic: two loads at once record the same day, never half a file
    print(f"Daily partitions start on the first landing day {first} (recorded in {record}; set RECSYS_FIRST_DAY to change it)", file=sys.stderr)
    return first.isoformat()


def first_landing_day() -> date | None:
    from resources.landing import LandingDataError, LandingZone

    try:
        return next(iter(LandingZone().landing_days()), None)
    except LandingDataError:
        return None  # nothing has landed yet


FIRST_DAY = resolve_first_day(settings.first_day(), settings.recsys_home() / "first_day", first_landing_day)

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY)

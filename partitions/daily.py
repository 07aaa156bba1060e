"""Daily partitions for event data.

The first day is fixed by ``RECSYS_FIRST_DAY`` (default 2026-01-01) rather than derived from
the data: partition keys must not move when the code location reloads. Set it to the first
day of your export when you bring your own data; ingest refuses days before it with a
message that says so.
"""

import os

import dagster as dg

FIRST_DAY = os.environ.get("RECSYS_FIRST_DAY", "2026-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY)

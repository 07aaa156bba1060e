"""Ingest time: every timestamp lands as a UTC instant, whatever the host's TZ; days outside the partitions are named.

The time-zone test runs the real ingest materialization in two processes, under TZ=UTC and
TZ=America/New_York, and compares what each wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from partitions import daily_partitions
from recsys_assets.sensors import landing_sensor
from resources.landing import LandingZone
from resources.settings import PROJECT_DIR
from tests.test_ingest import ITEMS, USERS, restore_env, write  # noqa: F401  (restore_env is a fixture)
from tests.test_ingest_guards import ingest, metadata, query, row_total

TEXT_TIMES = (
    "user_id,item_id,ts\n"
    "1000001,5000001,2026-06-01T10:00+02:00\n"  # 08:00 UTC
    "1000001,5000002,2026-06-01 12:00:00\n"  # naive: UTC
    "1000002,5000001,2026-06-01T23:30:00Z\n"
    "1000002,5000002,2026-06-01 22:30:00-05:00\n"  # 03:30 UTC on 06-02: not this file's day
    "1000002,5000001,2026-06-01 09:00:00 Europe/Berlin\n"  # 07:00 UTC
)

LOAD_AND_DUMP = """
import json, sys
import dagster as dg, duckdb
from pathlib import Path
from recsys_assets.ingest.assets import ingest_assets
from resources import default_resources
home = Path(sys.argv[1])
for selection, day in ((["raw/users", "raw/items"], None), (["raw/purchases"], "2026-06-01"), (["raw/purchases"], "2026-06-02")):
    dg.materialize(ingest_assets, selection=selection, partition_key=day, resources=default_resources(), instance=dg.DagsterInstance.ephemeral())
with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
    loaded = conn.execute("SELECT event_date::VARCHAR, user_id, item_id, ts::VARCHAR FROM raw.purchases ORDER BY ALL").fetchall()
    quarantined = conn.execute("SELECT partition_key, source_row, rule, reason FROM raw.quarantine ORDER BY ALL").fetchall()
print(json.dumps({"loaded": loaded, "quarantined": quarantined}))
"""


def time_landing(landing: Path) -> Path:
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    write(landing, "purchases/2026-06-01.csv", TEXT_TIMES)
    aware = pd.DataFrame({"user_id": [1000001, 1000002], "item_id": [5000001, 5000002]})
    aware["ts"] = pd.to_datetime(["2026-06-02 06:00", "2026-06-02 19:30"]).tz_localize("America/New_York")  # 10:00, 23:30 UTC
    aware.to_parquet(landing / "purchases" / "2026-06-02.parquet", index=False)
    return landing


def load_under_tz(tmp_path: Path, tz: str) -> subprocess.Popen:
    home = tmp_path / tz.replace("/", "_")
    env = {**os.environ, "TZ": tz, "RECSYS_HOME": str(home), "RECSYS_LANDING_DIR": str(tmp_path / "landing")}
    env.pop("RECSYS_SOURCE_TIMEZONE", None)
    return subprocess.Popen([sys.executable, "-c", LOAD_AND_DUMP, str(home)], cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_timestamps_land_as_utc_instants_under_any_host_tz(tmp_path):
    time_landing(tmp_path / "landing")
    runs = {tz: load_under_tz(tmp_path, tz) for tz in ("UTC", "America/New_York")}
    results = {}
    for tz, process in runs.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        results[tz] = json.loads(out.strip().splitlines()[-1])

    assert results["UTC"] == results["America/New_York"]
    loaded = [tuple(row) for row in results["UTC"]["loaded"]]
    assert loaded == [
        ("2026-06-01", 1000001, 5000001, "2026-06-01 08:00:00"),
        ("2026-06-01", 1000001, 5000002, "2026-06-01 12:00:00"),
        ("2026-06-01", 1000002, 5000001, "2026-06-01 07:00:00"),
        ("2026-06-01", 1000002, 5000001, "2026-06-01 23:30:00"),
        ("2026-06-02", 1000001, 5000001, "2026-06-02 10:00:00"),
        ("2026-06-02", 1000002, 5000002, "2026-06-02 23:30:00"),
    ]
    [(key, row, rule, reason)] = [q for q in results["UTC"]["quarantined"] if q[0] != "snapshot"]  # not the catalog's
    assert (key, row, rule) == ("2026-06-01", 4, "ts outside file day")
    assert "is on 2026-06-02 (UTC)" in reason


def test_naive_timestamps_are_read_in_the_source_timezone(tmp_path, restore_env):
    landing = time_landing(tmp_path / "landing")
    os.environ["RECSYS_SOURCE_TIMEZONE"] = "Asia/Tokyo"  # restore_env does not know it
    try:
        assert ingest(tmp_path, landing, ["raw/users", "raw/items"]).success
        assert ingest(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01").success
    finally:
        del os.environ["RECSYS_SOURCE_TIMEZONE"]
    times = {(u, i): ts for u, i, ts in query(tmp_path, "SELECT user_id, item_id, ts FROM raw.purchases")}
    assert times[(1000001, 5000002)] == datetime(2026, 6, 1, 3, 0)  # 12:00 in Tokyo
    assert times[(1000001, 5000001)] == datetime(2026, 6, 1, 8, 0)  # an explicit offset wins
    with pytest.raises(Exception, match="not an IANA time zone"):
        LandingZone(path=str(landing), source_timezone="Mars/Olympus").zone


def test_rows_outside_the_partition_range_are_quarantined_with_the_reason(tmp_path, restore_env):
    first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    before, after = str(date.fromisoformat(first).replace(year=date.fromisoformat(first).year - 1)), "2099-01-01"
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    write(
        landing,
        "purchases.csv",
        f"user_id,item_id,ts\n1000001,5000001,{before} 10:00:00\n1000001,5000001,{first} 10:00:00\n"
        f"1000002,5000002,2026-06-01 10:00:00\n1000002,5000001,{after} 10:00:00\n",
    )
    write(landing, f"purchases/{before}.csv", f"user_id,item_id,ts\n1000002,5000001,{before} 11:00:00\n")
    assert ingest(tmp_path, landing, ["raw/users", "raw/items"]).success

    def outside() -> list[tuple]:
        return query(tmp_path, "SELECT partition_key, rule, reason FROM raw.quarantine WHERE source_table = 'purchases' ORDER BY 1, 3")

    expected = [(before, "before first partition")] * 2 + [(after, "after last partition")]
    # A range run that touches neither end partition quarantines them too (its last load, once).
    range_run = ingest(tmp_path, landing, ["raw/purchases"], tags={"dagster/asset_partition_range_start": "2026-05-31",
                                                                    "dagster/asset_partition_range_end": "2026-06-01"})
    assert [(key, rule) for key, rule, _ in outside()] == expected
    assert metadata(range_run, "raw__purchases")["rows_quarantined"] == 3
    for day in (first, "2026-06-01", last, first):  # every run replaces them: no duplicates
        assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=day).success

    assert query(tmp_path, "SELECT event_date::VARCHAR FROM raw.purchases ORDER BY 1") == [(first,), ("2026-06-01",)]
    assert [(key, rule) for key, rule, _ in outside()] == expected
    assert f"before the first daily partition {first} (RECSYS_FIRST_DAY)" in outside()[0][2]
    assert row_total(tmp_path, "purchases") == 5  # every row of both files, in exactly one place


@pytest.fixture
def unmapped_landing(tmp_path) -> Path:
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    for day in (first.replace(year=first.year - 1), date.today()):
        write(tmp_path, f"purchases/{day}.csv", f"user_id,item_id,ts\n1,2,{day} 10:00:00\n")
    return tmp_path


def test_landing_sensor_reports_days_it_cannot_map(unmapped_landing):
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"landing": LandingZone(path=str(unmapped_landing))})
    result = landing_sensor(context)
    message = result.skip_reason.skip_message
    first = daily_partitions.get_first_partition_key()
    assert result.run_requests == []
    assert f"1 landing day(s) before the first daily partition {first} cannot be mapped" in message
    assert "set RECSYS_FIRST_DAY=" in message
    assert f"1 landing day(s) not complete yet ({date.today()}" in message

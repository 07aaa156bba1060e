"""Ingest never loses good data: real export layouts load, surprising shrinks fail, bad columns and values are named.

Every test materializes the real ingest assets into a real DuckDB warehouse.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from recsys_assets.ingest.assets import ingest_assets
from resources.landing import LandingDataError
from tests.conftest import point_platform_at
from tests.test_ingest import ITEMS, USERS, restore_env, write  # noqa: F401  (restore_env is a fixture)

DAY = "2026-06-01"
PURCHASES = "user_id,item_id,ts,price,quantity\n1000001,5000001,2026-06-01 10:00:00,10.5,1\n1000002,5000002,2026-06-01 11:00:00,99.0,2\n"


def ingest(
    home: Path, landing: Path, selection: list[str], partition_key: str | None = None, tags: dict | None = None, **config
) -> dg.ExecuteInProcessResult:
    """Materialize ingest assets; ``config`` (allow_shrink, max_shrink_share) goes to every selected asset."""
    from resources import default_resources

    point_platform_at(home, landing)
    run_config = {"ops": {key.replace("/", "__"): {"config": config} for key in selection}} if config else None
    return dg.materialize(
        ingest_assets,
        selection=selection,
        partition_key=partition_key,
        resources=default_resources(),
        run_config=run_config,
        tags=tags,
        instance=dg.DagsterInstance.ephemeral(),
    )


def query(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def row_total(home: Path, table: str) -> int:
    """Rows of ``table`` in raw.* plus raw.quarantine: must equal the rows in its files."""
    return query(home, f"SELECT (SELECT count(*) FROM raw.{table}) + (SELECT count(*) FROM raw.quarantine WHERE source_table = '{table}')")[0][0]


def snapshots(landing: Path) -> Path:
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    return landing


def metadata(result: dg.ExecuteInProcessResult, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


# --- layouts ---------------------------------------------------------------------------------


def test_compressed_csv_hive_folders_and_part_files_load_and_the_rest_is_listed(tmp_path, restore_env):
    landing = tmp_path / "landing"
    landing.mkdir()
    with gzip.open(landing / "users.csv.gz", "wt") as f:
        f.write(USERS)
    with duckdb.connect() as conn:
        conn.execute(f"COPY (SELECT * FROM read_csv('{write(tmp_path, 'items.csv', ITEMS)}')) TO '{landing}/items.csv.zst' (FORMAT csv, HEADER, COMPRESSION zstd)")
    spark_day = landing / "purchases" / f"dt={DAY}"
    spark_day.mkdir(parents=True)
    frame = pd.DataFrame({"user_id": [1000001, 1000002, 1000001], "item_id": [5000001, 5000002, 5000002],
                          "ts": pd.to_datetime(["2026-06-01 08:00", "2026-06-01 09:00", "2026-06-01 10:00"])})
    frame.iloc[:2].to_parquet(spark_day / "part-00000-c000.snappy.parquet", index=False)
    frame.iloc[2:].to_parquet(spark_day / "part-00001-c000.snappy.parquet", index=False)
    (spark_day / "_SUCCESS").write_text("")
    (spark_day / ".part-00000-c000.snappy.parquet.crc").write_text("x")
    with gzip.open(landing / "purchases" / "2026-06-02.csv.gz", "wt") as f:
        f.write("user_id,item_id,ts\n1000002,5000001,2026-06-02 12:00:00\n")
    write(landing, "purchases/2026-06-03.json", "{}")
    write(landing, "orders.csv", "order_id\n1\n")

    snapshot_run = ingest(tmp_path, landing, ["raw/users", "raw/items"])
    assert query(tmp_path, "SELECT count(*) FROM raw.users")[0][0] == 2
    assert query(tmp_path, "SELECT count(*) FROM raw.items")[0][0] == 2  # the third has a negative price
    for day in (DAY, "2026-06-02"):
        assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=day).success
    assert dict(query(tmp_path, "SELECT event_date::VARCHAR, count(*) FROM raw.purchases GROUP BY 1")) == {DAY: 3, "2026-06-02": 1}

    skipped = metadata(snapshot_run, "raw__users")["skipped_files"]
    assert skipped["orders.csv"].startswith("not a table")
    assert skipped["purchases/2026-06-03.json"].startswith("not a recognised format")
    assert skipped[f"purchases/dt={DAY}/_SUCCESS"].startswith("hidden")
    assert f"purchases/dt={DAY}/part-00000-c000.snappy.parquet" not in skipped


# --- the shrink guard ------------------------------------------------------------------------


def test_a_day_re_exported_compressed_is_replaced_and_a_vanished_day_fails(tmp_path, restore_env):
    landing = snapshots(tmp_path / "landing")
    csv_file = write(landing, f"purchases/{DAY}.csv", PURCHASES)
    write(landing, "purchases/2026-06-02.csv", "user_id,item_id,ts\n1000001,5000001,2026-06-02 10:00:00\n")
    assert ingest(tmp_path, landing, ["raw/users", "raw/items"]).success
    assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY).success

    with gzip.open(landing / "purchases" / f"{DAY}.csv.gz", "wt") as f:  # the same day, re-exported compressed
        f.write(PURCHASES)
    csv_file.unlink()
    assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY).success
    assert query(tmp_path, "SELECT count(*) FROM raw.purchases")[0][0] == 2

    (landing / "purchases" / f"{DAY}.csv.gz").rename(landing / "purchases" / f"{DAY}.csv.gz.bak")  # moved away
    with pytest.raises(LandingDataError, match=rf"raw.purchases day {DAY}: refusing to replace it: the source has no rows") as error:
        ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY)
    assert "no landing file holds it" in str(error.value) and f"purchases/{DAY}.csv.gz.bak" in str(error.value)
    assert "allow_shrink: true" in str(error.value)
    assert query(tmp_path, "SELECT count(*) FROM raw.purchases")[0][0] == 2  # the day is intact

    accepted = ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY, allow_shrink=True)
    assert query(tmp_path, "SELECT count(*) FROM raw.purchases")[0][0] == 0
    assert DAY in metadata(accepted, "raw__purchases")["shrinks_accepted"]


def test_an_empty_snapshot_fails_and_keeps_the_table(tmp_path, restore_env):
    landing = snapshots(tmp_path / "landing")
    assert ingest(tmp_path, landing, ["raw/users"]).success
    write(landing, "users.csv", "user_id,gender,age,geo\n")  # header only
    with pytest.raises(LandingDataError, match=r"raw.users: refusing to replace it: the source has no rows \(now: 2 loaded"):
        ingest(tmp_path, landing, ["raw/users"])
    assert query(tmp_path, "SELECT user_id FROM raw.users ORDER BY 1") == [(1000001,), (1000002,)]


def test_a_snapshot_losing_more_than_the_allowed_share_fails(tmp_path, restore_env):
    landing = tmp_path / "landing"
    rows = [f"{1000000 + i},1,30,5" for i in range(10)]
    write(landing, "users.csv", "user_id,gender,age,geo\n" + "\n".join(rows) + "\n")
    assert ingest(tmp_path, landing, ["raw/users"]).success

    write(landing, "users.csv", "user_id,gender,age,geo\n" + "\n".join(rows[:7] + ["oops,1,30,5"]) + "\n")
    with pytest.raises(LandingDataError, match=r"7 valid rows would replace 10 \(30% fewer, more than the allowed 20%\); of the 8 rows read, 1 would be quarantined"):
        ingest(tmp_path, landing, ["raw/users"])
    assert query(tmp_path, "SELECT count(*) FROM raw.users")[0][0] == 10
    assert query(tmp_path, "SELECT count(*) FROM raw.quarantine")[0][0] == 0  # quarantine untouched too

    assert ingest(tmp_path, landing, ["raw/users"], max_shrink_share=0.5).success
    assert row_total(tmp_path, "users") == 8


# --- column types ----------------------------------------------------------------------------


def test_float_id_and_int_columns_are_coerced_when_lossless(tmp_path, restore_env):
    landing = tmp_path / "landing"
    # pandas writes an integer column with a null as floats: the null row is bad, the column is not.
    write(landing, "users.csv", "user_id,gender,age,geo\n1000001.0,1.0,34.0,77\n1000002.0,,51.0,12\n,0.0,20.0,5\n")
    items = pd.DataFrame({"item_id": [5000001.0, 5000002.0, np.nan], "category_id": [7, 7, 8], "price": [10.5, 99.0, 1.0]})
    items.to_parquet(landing / "items.parquet", index=False)
    write(landing, f"purchases/{DAY}.csv", "user_id,item_id,ts,quantity\n1000001,5000002.0,2026-06-01 10:00:00,2.0\n")

    result = ingest(tmp_path, landing, ["raw/users", "raw/items"])
    assert query(tmp_path, "SELECT user_id, gender, age FROM raw.users ORDER BY 1") == [(1000001, 1, 34), (1000002, None, 51)]
    assert query(tmp_path, "SELECT item_id FROM raw.items ORDER BY 1") == [(5000001,), (5000002,)]
    assert sorted(query(tmp_path, "SELECT source_table, source_row, rule FROM raw.quarantine")) == [("items", 3, "missing item_id"), ("users", 3, "missing user_id")]
    assert f"{landing / 'users.csv'}:user_id" in metadata(result, "raw__users")["coerced_columns"]

    assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY).success
    assert query(tmp_path, "SELECT user_id, item_id, quantity FROM raw.purchases") == [(1000001, 5000002, 2)]


def test_a_float_id_column_that_is_not_whole_numbers_fails_naming_the_column(tmp_path, restore_env):
    landing = snapshots(tmp_path / "landing")
    bad = write(landing, "users.csv", "user_id,gender\n1000001.0,1\n1000002.5,0\n")
    with pytest.raises(LandingDataError, match=rf"{bad}: column user_id is written as floats and row 2 holds '1000002.5'"):
        ingest(tmp_path, landing, ["raw/users"])
    ids = pd.DataFrame({"user_id": [float(2**53 + 2), 1.0]})  # too large to be an exact id in a double
    ids.to_parquet(landing / "users.parquet", index=False)
    bad.unlink()
    with pytest.raises(LandingDataError, match=r"users.parquet: column user_id is written as floats and row 1"):
        ingest(tmp_path, landing, ["raw/users"])


def test_mixed_integer_column_keeps_row_level_quarantine(tmp_path, restore_env):
    landing = snapshots(tmp_path / "landing")
    write(landing, "users.csv", "user_id,gender\n1000001,1\n1000002.5,0\nabc,1\n")
    assert ingest(tmp_path, landing, ["raw/users"]).success
    assert query(tmp_path, "SELECT source_row, rule FROM raw.quarantine ORDER BY 1") == [(2, "bad user_id"), (3, "bad user_id")]


# --- values ----------------------------------------------------------------------------------


def test_non_finite_prices_and_quantities_are_quarantined_with_the_rule(tmp_path, restore_env):
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", "item_id,category_id,price\n5000001,7,10.5\n5000002,7,NaN\n5000003,8,inf\n")
    day_file = write(
        landing,
        f"purchases/{DAY}.csv",
        "user_id,item_id,ts,price,quantity\n"
        "1000001,5000001,2026-06-01 10:00:00,10.5,1\n"
        "1000001,5000001,2026-06-01 11:00:00,NaN,1\n"
        "1000002,5000001,2026-06-01 12:00:00,-Infinity,1\n"
        "1000002,5000001,2026-06-01 13:00:00,10.5,inf\n",
    )
    pd.DataFrame({"user_id": [1000001], "item_id": [5000001], "ts": pd.to_datetime(["2026-06-01 14:00"]), "price": [np.inf]}).to_parquet(
        landing / "purchases" / f"{DAY}.parquet", index=False
    )
    assert ingest(tmp_path, landing, ["raw/users", "raw/items"]).success
    assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY).success

    assert query(tmp_path, "SELECT item_id, price FROM raw.items") == [(5000001, 10.5)]
    rules = query(tmp_path, "SELECT source_table, source_file, source_row, rule, reason FROM raw.quarantine ORDER BY 1, 2, 3")
    assert [(t, Path(f).name, r, rule) for t, f, r, rule, _ in rules] == [
        ("items", "items.csv", 2, "non-finite price"),
        ("items", "items.csv", 3, "non-finite price"),
        ("purchases", f"{DAY}.csv", 2, "non-finite price"),
        ("purchases", f"{DAY}.csv", 3, "non-finite price"),
        ("purchases", f"{DAY}.csv", 4, "non-finite quantity"),
        ("purchases", f"{DAY}.parquet", 1, "non-finite price"),
    ]
    assert rules[2][4] == "price is not a finite number: 'NaN'" and rules[2][1] == str(day_file)
    assert query(tmp_path, "SELECT price FROM raw.purchases") == [(10.5,)]
    assert row_total(tmp_path, "purchases") == 5 and row_total(tmp_path, "items") == 3


# --- CSV errors ------------------------------------------------------------------------------


def test_a_ragged_csv_line_names_file_and_line_and_the_day_stays(tmp_path, restore_env):
    landing = snapshots(tmp_path / "landing")
    day_file = write(landing, f"purchases/{DAY}.csv", PURCHASES)
    assert ingest(tmp_path, landing, ["raw/users", "raw/items"]).success
    assert ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY).success

    write(landing, f"purchases/{DAY}.csv", PURCHASES + "1000001,5000001,2026-06-01 12:00:00,10.5,1,surplus\n")
    with pytest.raises(LandingDataError, match=rf"{day_file}: not a valid CSV .*CSV Error on Line: 4 .*Expected Number of Columns: 5 Found: 6") as error:
        ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY)
    assert "the CSV sniffer" in str(error.value)
    assert query(tmp_path, "SELECT count(*) FROM raw.purchases")[0][0] == 2

    write(landing, f"purchases/{DAY}.csv", PURCHASES.replace(",", ";"))
    with pytest.raises(LandingDataError, match=r"missing required column\(s\) user_id, item_id, ts .*sniffer guesses delimiter ';'"):
        ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY)

    day_file.write_bytes(b"")
    with pytest.raises(LandingDataError, match=rf"{day_file}: the file is empty \(0 bytes\)"):
        ingest(tmp_path, landing, ["raw/purchases"], partition_key=DAY)
    assert query(tmp_path, "SELECT count(*) FROM raw.purchases")[0][0] == 2

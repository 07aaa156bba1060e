"""Ingest: daily partitions replace their day, bad input is quarantined or named in an error."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import dagster as dg
import duckdb
import pandas as pd
import pytest

from recsys_assets.ingest.assets import ingest_assets
from resources.landing import LandingDataError
from tests.conftest import point_platform_at

USERS = "user_id,gender,age,geo\n1000001,1,34,77\n1000002,0,51,12\n"
ITEMS = "item_id,category_id,price\n5000001,7,10.5\n5000002,7,99.0\n5000003,8,-4.0\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text).lstrip())
    return path


def materialize(home: Path, landing: Path, selection: list[str], partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    from resources import default_resources

    point_platform_at(home, landing)
    return dg.materialize(
        ingest_assets,
        selection=selection,
        partition_key=partition_key,
        resources=default_resources(),
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.fixture
def restore_env(monkeypatch):
    # point_platform_at sets RECSYS_HOME / RECSYS_LANDING_DIR; monkeypatch puts them back.
    monkeypatch.setenv("RECSYS_HOME", "unset")
    monkeypatch.setenv("RECSYS_LANDING_DIR", "unset")


def day_counts(warehouse: Path, table: str) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        rows = conn.execute(f"SELECT event_date::VARCHAR, count(*) FROM raw.{table} GROUP BY 1").fetchall()
    return dict(rows)


def test_rematerializing_a_day_replaces_exactly_that_day(tmp_path, market_landing, restore_env):
    landing, _ = market_landing
    day_one, day_two = "2026-06-01", "2026-06-02"
    expected = {day: len(pd.read_parquet(landing / "purchases" / f"{day}.parquet")) for day in (day_one, day_two)}

    assert materialize(tmp_path, landing, ["raw/users", "raw/items"]).success
    for day in (day_one, day_two, day_one):
        assert materialize(tmp_path, landing, ["raw/purchases"], partition_key=day).success

    assert day_counts(tmp_path / "warehouse.duckdb", "purchases") == expected
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT user_id, item_id, ts FROM raw.purchases GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    assert duplicates == 0


def test_bad_rows_are_quarantined_with_file_row_and_reason(tmp_path, restore_env):
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    purchases = write(
        landing,
        "purchases/2026-06-01.csv",
        """
        user_id,item_id,ts,price,quantity
        1000001,5000001,2026-06-01 10:00:00,10.5,1
        1000001,5000002,not-a-time,99.0,1
        1000002,5000001,2026-06-01 11:00:00,-3.0,1
        9999999,5000001,2026-06-01 12:00:00,10.5,1
        1000001,5000001,2026-06-01 10:00:00,10.5,1
        1000002,5000003,2026-06-01 13:00:00,,2
        1000002,5000002,2026-06-02 09:00:00,99.0,1
        """,
    )
    assert materialize(tmp_path, landing, ["raw/users", "raw/items"]).success
    result = materialize(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01")
    assert result.success

    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        loaded = conn.execute("SELECT user_id, item_id FROM raw.purchases").fetchall()
        quarantined = conn.execute(
            "SELECT source_table, source_file, source_row, rule, reason FROM raw.quarantine ORDER BY source_table, source_row"
        ).fetchall()

    assert loaded == [(1000001, 5000001)]
    items_rows = [q for q in quarantined if q[0] == "items"]
    assert [(row, rule) for _, _, row, rule, _ in items_rows] == [(3, "negative price")]
    by_row = {row: (rule, reason, file) for table, file, row, rule, reason in quarantined if table == "purchases"}
    assert by_row[2][0] == "bad ts" and "not-a-time" in by_row[2][1]
    assert by_row[3][0] == "negative price" and "-3.0" in by_row[3][1]
    assert by_row[4][0] == "unknown user_id" and "9999999" in by_row[4][1]
    assert by_row[5][0] == "duplicate" and by_row[5][1].endswith("row 1")
    assert by_row[6][0] == "unknown item_id"  # its catalog row was quarantined for a negative price
    assert by_row[7][0] == "ts outside file day"
    assert all(file == str(purchases) for _, _, file in by_row.values())
    assert len(by_row) + len(loaded) == 7  # every input row is accounted for

    materialization = result.asset_materializations_for_node("raw__purchases")[0]
    assert materialization.metadata["rows_quarantined"].value == 6
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed  # 6 of 7 rows quarantined is far above the warning share


def test_missing_required_column_names_file_and_column(tmp_path, restore_env):
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    bad = write(landing, "purchases/2026-06-01.csv", "user_id,item_id,price\n1000001,5000001,10.5\n")
    assert materialize(tmp_path, landing, ["raw/users", "raw/items"]).success
    with pytest.raises(LandingDataError, match=rf"{bad}: missing required column\(s\) ts"):
        materialize(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01")


def test_unroutable_timestamp_in_undated_file_names_file_row_and_column(tmp_path, restore_env):
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    bad = write(
        landing,
        "purchases.csv",
        "user_id,item_id,ts\n1000001,5000001,2026-06-01 10:00:00\n1000002,5000002,yesterday\n",
    )
    assert materialize(tmp_path, landing, ["raw/users", "raw/items"]).success
    with pytest.raises(LandingDataError, match=rf"{bad}: row 2, column ts: 'yesterday'"):
        materialize(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01")


def test_failed_load_leaves_the_previous_day_intact(tmp_path, restore_env):
    landing = tmp_path / "landing"
    write(landing, "users.csv", USERS)
    write(landing, "items.csv", ITEMS)
    write(landing, "purchases/2026-06-01.csv", "user_id,item_id,ts\n1000001,5000001,2026-06-01 10:00:00\n")
    assert materialize(tmp_path, landing, ["raw/users", "raw/items"]).success
    assert materialize(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01").success

    write(landing, "purchases/2026-06-01.csv", "user_id,item_id\n1000002,5000002\n")  # broken re-export
    with pytest.raises(LandingDataError):
        materialize(tmp_path, landing, ["raw/purchases"], partition_key="2026-06-01")
    assert day_counts(tmp_path / "warehouse.duckdb", "purchases") == {"2026-06-01": 1}


def test_missing_landing_data_says_what_to_do(tmp_path, restore_env):
    (tmp_path / "landing").mkdir()
    with pytest.raises(LandingDataError, match="RECSYS_LANDING_DIR"):
        materialize(tmp_path, tmp_path / "landing", ["raw/users"])


# --- the synthetic marketplace's own input checks ------------------------------------------


def test_a_small_catalog_still_has_items_in_every_category():
    from datetime import date

    from synthetic_marketplace.generator import MarketplaceSpec, generate

    spec = MarketplaceSpec(users=50, items=30, days=10, end_date=date(2026, 6, 30), seed=3)
    market = generate(spec)
    assert market.items["category_id"].nunique() == spec.categories
    assert len(market.purchases) > 0
    with pytest.raises(ValueError, match="use --items 24 or more"):
        generate(MarketplaceSpec(users=50, items=10, days=10, end_date=date(2026, 6, 30)))

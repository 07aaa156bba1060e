"""Operations in process: layer policies, the landing sensor, automation conditions, alerts.

The same sensors run under the real dagster-daemon in tests/test_operations_e2e.py.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from recsys_assets.automation import LAYER_POLICIES, ON_DEMAND_GROUPS, automation_sensors
from recsys_assets.definitions import defs
from partitions.user_shards import ShardRange
from recsys_assets.ingest.assets import ingest_assets
from recsys_assets.jobs import EVENT_KEYS, SNAPSHOT_KEYS, STAGE_JOBS, ingest_day
from recsys_assets.sensors import (
    alert_sensor,
    landing_sensor,
    run_failure_alert,
    user_shard_sensor,
)
from resources.landing import LandingZone
from resources.notifier import Notifier
from resources.warehouse import Warehouse, warehouse_resource
from synthetic_marketplace.generator import MarketplaceSpec, generate
from synthetic_marketplace.landing import write_landing
from tests.operations_drill import broken_asset, checked_asset

TINY = MarketplaceSpec(users=60, items=150, days=4, end_date=date(2026, 6, 30), seed=5)
SENSOR_DRIVEN = set(EVENT_KEYS)  # event days are started by the landing sensor


def specs() -> list[dg.AssetSpec]:
    return sorted(defs.resolve_all_asset_specs(), key=lambda spec: spec.key.to_user_string())  # one order in every xdist worker


# --- policies -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", specs(), ids=lambda spec: spec.key.to_user_string())
def test_every_asset_has_its_layers_freshness_policy_and_a_trigger(spec):
    assert spec.group_name in LAYER_POLICIES, f"add a LayerPolicy for group {spec.group_name!r} in recsys_assets/automation.py"
    assert spec.freshness_policy == LAYER_POLICIES[spec.group_name].freshness
    assert spec.automation_condition is not None or spec.key in SENSOR_DRIVEN or spec.group_name in ON_DEMAND_GROUPS


def test_the_cadences_per_layer():
    fail = {group: policy.freshness.fail_window.to_timedelta() for group, policy in LAYER_POLICIES.items() if policy.freshness}
    assert fail["ingest"] == timedelta(days=2)  # a day late is a failure
    assert fail["model"] == timedelta(days=8)  # retrained weekly
    assert fail["serving"] == fail["marts"] == timedelta(days=2)  # refreshed daily


def test_automation_sensors_cover_every_layer_and_tag_their_runs_with_retries():
    sensors = automation_sensors()
    graph = defs.resolve_asset_graph()
    targeted = [key for sensor in sensors for key in sensor.asset_selection.resolve(graph)]
    automated = graph.materializable_asset_keys - dg.AssetSelection.groups(*ON_DEMAND_GROUPS).resolve(graph)
    assert sorted(targeted) == sorted(automated)  # each asset by exactly one sensor, none launched by hand only
    assert all(int(sensor.run_tags["dagster/max_retries"]) >= 1 for sensor in sensors)
    assert defs.get_repository_def().get_job("ingest_day").tags["dagster/max_retries"] == "1"  # the landing sensor's runs


def test_the_stage_jobs_cover_every_asset_once():
    graph = defs.resolve_asset_graph()
    staged = [key for job in STAGE_JOBS for key in job.selection.resolve(graph)]
    automated = graph.materializable_asset_keys - dg.AssetSelection.groups(*ON_DEMAND_GROUPS).resolve(graph)
    assert sorted(staged) == sorted(automated)  # recsys run materializes all but the on-demand experiments, each once
    assert {job.name for job in STAGE_JOBS} <= {job.name for job in defs.get_repository_def().get_all_jobs()}



def test_recsys_run_gives_its_runs_the_workspace_code_location():
    import yaml

    from recsys_assets.runner import CODE_LOCATION

    (entry,) = yaml.safe_load((Path(__file__).parent.parent / "workspace.yaml").read_text())["load_from"]
    location = CODE_LOCATION.code_location_origin
    assert location.location_name == entry["python_module"]["location_name"]  # the timeline matches runs by it
    assert location.loadable_target_origin.module_name == entry["python_module"]["module_name"]


# --- landing sensor -------------------------------------------------------------------------


@pytest.fixture
def landing(tmp_path) -> Path:
    write_landing(generate(TINY), TINY, tmp_path / "landing")
    return tmp_path / "landing"


def report_loaded(instance: dg.DagsterInstance, days: list[str]) -> None:
    for key in SNAPSHOT_KEYS.values():
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    for day in days:
        for key in EVENT_KEYS:
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))


def drop_day(landing: Path, day: date) -> None:
    """A copy of the newest day's events, moved to ``day``."""
    for table in ("purchases", "wishlist", "cart"):
        newest = sorted((landing / table).iterdir())[-1]
        events = pd.read_parquet(newest)
        events["ts"] = events["ts"] + (pd.Timestamp(day) - pd.Timestamp(newest.stem))
        events.to_parquet(landing / table / f"{day}.parquet", index=False)


def evaluate_landing_sensor(instance, landing: Path) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"landing": LandingZone(path=str(landing))})
    return landing_sensor(context)


def test_landing_sensor_requests_exactly_the_new_day(landing):
    instance = dg.DagsterInstance.ephemeral()
    loaded = [str(TINY.start_date + timedelta(days=i)) for i in range(TINY.days)]
    report_loaded(instance, loaded)
    assert evaluate_landing_sensor(instance, landing).run_requests == []

    new_day = TINY.end_date + timedelta(days=1)
    drop_day(landing, new_day)
    [request] = evaluate_landing_sensor(instance, landing).run_requests
    assert request.partition_key == str(new_day)
    assert set(request.asset_selection) == set(EVENT_KEYS)  # snapshots unchanged: not reloaded


def test_landing_sensor_reloads_changed_snapshots_with_the_day_and_skips_incomplete_days(landing):
    instance = dg.DagsterInstance.ephemeral()
    report_loaded(instance, [str(TINY.start_date + timedelta(days=i)) for i in range(TINY.days - 1)])
    shutil.copy(landing / "users.parquet", landing / "users.tmp")
    (landing / "users.tmp").replace(landing / "users.parquet")  # a re-delivered snapshot
    drop_day(landing, date.today())  # today is not over: no partition yet

    [request] = evaluate_landing_sensor(instance, landing).run_requests
    assert request.partition_key == str(TINY.end_date)
    assert set(request.asset_selection) == {SNAPSHOT_KEYS["users"], *EVENT_KEYS}


def test_the_requested_run_loads_the_day_after_its_snapshots(landing, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    request = evaluate_landing_sensor(instance, landing).run_requests[-1]  # every day is new here
    assert SNAPSHOT_KEYS["users"] in request.asset_selection  # never loaded: loaded with the day
    resources = {"warehouse": warehouse_resource(str(tmp_path / "warehouse.duckdb")), "landing": LandingZone(path=str(landing))}
    job = dg.Definitions(assets=ingest_assets, jobs=[ingest_day], resources=resources).resolve_job_def("ingest_day")
    result = job.execute_in_process(instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection)
    assert result.success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT DISTINCT CAST(event_date AS VARCHAR) FROM raw.purchases").fetchall() == [(request.partition_key,)]
        assert conn.execute("SELECT count(*) FROM raw.users").fetchone()[0] == TINY.users


# --- shard sensor ---------------------------------------------------------------------------


def test_shard_sensor_registers_shards_for_new_users_only(tmp_path, monkeypatch):
    database = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(database) as conn:
        conn.execute("CREATE SCHEMA staging; CREATE TABLE staging.stg_users AS SELECT * FROM (VALUES (5), (250000000), (260000000)) t(user_id)")
    instance = dg.DagsterInstance.ephemeral()

    def tick() -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, resources={"warehouse": Warehouse(database=database)})
        result = user_shard_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        return result

    monkeypatch.setenv("RECSYS_USERS_PER_SHARD", "2")
    tick()
    assert instance.get_dynamic_partitions("user_shards") == [ShardRange(0, 249_999_999).key, ShardRange(250_000_000, 260_000_000).key]
    assert not tick().dynamic_partitions_requests  # nobody new: nothing to add
    with duckdb.connect(database) as conn:
        conn.execute("INSERT INTO staging.stg_users VALUES (260000001)")
    [request] = tick().dynamic_partitions_requests
    # The newest shard held 2 users in 10,000,001 ids: the next shard is as wide.
    assert request.partition_keys == [ShardRange(260_000_001, 270_000_001).key]


def test_shard_sensor_waits_until_the_users_are_readable(tmp_path):
    database = str(tmp_path / "warehouse.duckdb")
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"warehouse": Warehouse(database=database)})
    duckdb.connect(database).close()  # exists, but staging.stg_users does not yet
    assert "not readable yet" in user_shard_sensor(context).skip_reason.skip_message


# --- automation conditions ------------------------------------------------------------------


def test_new_data_flows_downstream_eagerly_and_a_new_shard_gets_filled():
    instance = dg.DagsterInstance.ephemeral()
    for key in (*SNAPSHOT_KEYS.values(), dg.AssetKey(["staging", "stg_items"]), dg.AssetKey(["staging", "stg_users"])):
        instance.report_runless_asset_event(dg.AssetMaterialization(key))
    now = datetime(2026, 7, 1, 2, 0, tzinfo=timezone.utc)
    first = dg.evaluate_automation_conditions(defs, instance, evaluation_time=now)
    assert first.total_requested == 0  # turning the sensor on does not rebuild the world

    day = "2026-06-15"  # not the latest day: a late day flows through too
    for key in EVENT_KEYS:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))
    instance.add_dynamic_partitions("user_shards", ["u0000000000000000000-0000000000199999999"])
    second = dg.evaluate_automation_conditions(defs, instance, evaluation_time=now + timedelta(minutes=1), cursor=first.cursor)

    assert second.get_requested_partitions(dg.AssetKey(["staging", "fct_purchases"])) == {day}
    assert second.get_num_requested(dg.AssetKey(["staging", "stg_wishlist"])) == 1
    assert second.get_requested_partitions(dg.AssetKey(["serving", "shard_users"])) == {"u0000000000000000000-0000000000199999999"}
    assert second.get_num_requested(dg.AssetKey(["raw", "users"])) == 0  # snapshots wait for their cron

    # A daily partition and an unpartitioned asset cannot share a run: the next tick follows.
    instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(["staging", "fct_purchases"]), partition=day))
    third = dg.evaluate_automation_conditions(defs, instance, evaluation_time=now + timedelta(minutes=2), cursor=second.cursor)
    for key in (["features", "user_features"], ["features", "user_purchase_histories"], ["candidates", "item_vectors"]):
        assert third.get_num_requested(dg.AssetKey(key)) == 1, key


def test_snapshots_reload_on_the_nightly_cron():
    instance = dg.DagsterInstance.ephemeral()
    before = datetime(2026, 7, 1, 0, 30, tzinfo=timezone.utc)
    first = dg.evaluate_automation_conditions(defs, instance, evaluation_time=before)
    after = dg.evaluate_automation_conditions(defs, instance, evaluation_time=before + timedelta(hours=1), cursor=first.cursor)
    assert after.get_num_requested(dg.AssetKey(["raw", "users"])) == 1
    assert after.get_num_requested(dg.AssetKey(["raw", "purchases"])) == 0


# --- alerts ---------------------------------------------------------------------------------


class Webhook:
    """A local incoming-webhook endpoint on 127.0.0.1 that records what it receives."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/recsys"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def read_alerts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failed_asset_check_alerts_once_to_the_file_and_the_webhook(tmp_path, webhook):
    notifier = Notifier(path=str(tmp_path / "alerts.log"), webhook_url=webhook.url)
    drill = dg.Definitions(assets=[checked_asset], sensors=[alert_sensor], resources={"notifier": notifier})
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([checked_asset], instance=instance)

    def tick(cursor=None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=drill.get_repository_def(), resources={"notifier": notifier})
        return alert_sensor(context)

    first = tick()
    [alert] = read_alerts(tmp_path / "alerts.log")
    assert (alert["kind"], alert["subject"], alert["severity"]) == ("asset_check", "drill/checked:row_count_positive", "error")
    assert alert["details"]["metadata"] == {"rows": 0}
    assert webhook.received == [alert]
    tick(first.cursor)  # nothing new: no second alert
    assert len(read_alerts(tmp_path / "alerts.log")) == 1


def test_a_failed_run_alerts_with_its_retry_state(tmp_path):
    notifier = Notifier(path=str(tmp_path / "alerts.log"))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([broken_asset], instance=instance, raise_on_error=False, tags={"dagster/max_retries": "2"})
    failure = next(event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert", dagster_instance=instance, dagster_run=result.dagster_run, dagster_event=failure,
        resources={"notifier": notifier},
    ).for_run_failure()
    run_failure_alert(context)
    [alert] = read_alerts(tmp_path / "alerts.log")
    assert (alert["kind"], alert["subject"]) == ("run_failure", result.run_id)
    assert alert["details"]["max_retries"] == "2" and alert["details"]["failed_steps"] == ["drill__broken"]

"""Sensors: what starts work from outside the graph, and what tells people when something is wrong.

- ``landing_sensor``: a new event day in the landing folder -> an ingest run for exactly that day.
- ``user_shard_sensor``: users outside every shard -> new user-range shards registered.
- ``alert_sensor``: an asset failing its freshness policy or a failed asset check -> an alert.
- ``run_failure_alert``: a failed run -> an alert.

Alerts are a log line in the sensor's tick plus the ``notifier`` resource (resources/notifier.py).
The two alert sensors run by default; the two that start work are turned on in the UI (or
``dagster sensor start``) once the landing folder and warehouse are where they belong.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date

import dagster as dg
import duckdb

from partitions import daily_partitions, user_shards
from partitions.user_shards import ShardRange, plan_new_shards, shard_range
from recsys_assets.jobs import EVENT_KEYS, SNAPSHOT_KEYS, ingest_day
from recsys_assets.keys import RAW_PURCHASES
from recsys_assets.metadata import plain
from resources.artifacts import latest_materialization
from resources.landing import LandingZone
from resources.notifier import Alert, Notifier
from resources.warehouse import Warehouse



# --- landing --------------------------------------------------------------------------------


def new_landing_days(days: list[date], instance: dg.DagsterInstance) -> list[date]:
    """The landing days that raw/purchases has never attempted, and that are complete.

    A day whose ingest failed is not new: it is alerted on, fixed and re-run by a person, not
    retried every minute. Today is not complete until its daily partition exists (tomorrow).
    """
    days = [day for day in days if daily_partitions.has_partition_key(day.isoformat())]
    status = instance.get_status_by_partition(RAW_PURCHASES, [day.isoformat() for day in days], daily_partitions) or {}
    return [day for day in days if status.get(day.isoformat()) is None]


def unmapped_days_note(days: list[date]) -> str:
    """What the sensor says about landing days that have no daily partition ('' when there are none)."""
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    unmapped = [day for day in days if not daily_partitions.has_partition_key(day.isoformat())]
    before, after = [d for d in unmapped if d < first], [d for d in unmapped if d > first]
    notes = []
    if before:
        notes.append(
            f"{len(before)} landing day(s) before the first daily partition {first} cannot be mapped "
            f"({before[0]} .. {before[-1]}): set RECSYS_FIRST_DAY={before[0]} to ingest them; until then every "
            "ingest run quarantines their rows"
        )
    if after:
        notes.append(f"{len(after)} landing day(s) not complete yet ({after[0]} .. {after[-1]}): no daily partition until the day is over")
    return "; ".join(notes)


def stale_snapshots(landing: LandingZone, instance: dg.DagsterInstance) -> list[dg.AssetKey]:
    """Snapshots whose landing files changed after their last load: reloaded before the new day,
    so the day's events are validated against the users and items they refer to."""
    stale = []
    for table, key in SNAPSHOT_KEYS.items():
        changed = max((f.path.stat().st_mtime for f in landing.files(table)), default=0.0)
        loaded = latest_materialization(instance, key)
        if loaded is None or loaded.timestamp < changed:
            stale.append(key)
    return stale


@dg.sensor(
    name="landing_sensor",
    minimum_interval_seconds=60,
    job=ingest_day,
    description="Starts ingest of every complete event day that appears in the landing folder "
    "(RECSYS_LANDING_DIR), one run per day; reloads the snapshots first when their files changed.",
)
def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    found = landing.landing_days()
    days, unmapped = new_landing_days(found, context.instance), unmapped_days_note(found)
    if unmapped:
        context.log.warning(unmapped)
    if not days:
        return dg.SensorResult(skip_reason="No new event days in the landing folder." + (f" {unmapped}." if unmapped else ""))
    selection = [*stale_snapshots(landing, context.instance), *EVENT_KEYS]
    context.log.info(f"New landing days: {', '.join(map(str, days))}; reloading {[k.to_user_string() for k in selection]}")
    return dg.SensorResult(
        run_requests=[
            # The run key makes a day's request idempotent across ticks while its run is queued.
            dg.RunRequest(run_key=f"landing-{day}", partition_key=day.isoformat(), asset_selection=selection)
            for day in days
        ]
    )


# --- user shards ----------------------------------------------------------------------------


def users_if_any_uncovered(database: str, shards: list[ShardRange]) -> tuple[int, list[int]]:
    """How many users in staging.stg_users lie outside every shard and, when some do, every user id
    (the planner sizes new shards from the newest one's users). Read-only: never blocks a writer for long."""
    outside = " AND ".join(f"NOT ({shard.sql_filter()})" for shard in shards) or "true"
    with duckdb.connect(database, read_only=True) as conn:
        [(uncovered,)] = conn.execute(f"SELECT count(*) FROM staging.stg_users WHERE {outside}").fetchall()
        if not uncovered:
            return 0, []  # the usual tick: nothing to plan, so the ids are not read
        return uncovered, [user_id for (user_id,) in conn.execute("SELECT user_id FROM staging.stg_users").fetchall()]


@dg.sensor(
    name="user_shard_sensor",
    minimum_interval_seconds=300,
    description="Registers new user-range shards (partitions/user_shards.py) for users outside every "
    "shard; the serving layer's automation then fills them.",
)
def user_shard_sensor(context: dg.SensorEvaluationContext, warehouse: Warehouse) -> dg.SensorResult:
    existing = list(context.instance.get_dynamic_partitions(user_shards.name))
    try:
        uncovered, user_ids = users_if_any_uncovered(warehouse.database, [shard_range(key) for key in existing])
    except (duckdb.IOException, duckdb.CatalogException) as error:
        # A run holds the write lock, or staging.stg_users does not exist yet: try next tick.
        return dg.SensorResult(skip_reason=f"Users not readable yet: {error}")
    new = plan_new_shards(user_ids, existing)
    if not new:
        return dg.SensorResult(skip_reason=f"All users are in the {len(existing)} registered shards.")
    context.log.info(f"{uncovered} user(s) outside the registered shards: adding {', '.join(s.key for s in new)}")
    return dg.SensorResult(dynamic_partitions_requests=[user_shards.build_add_request([shard.key for shard in new])])


# --- alerts ---------------------------------------------------------------------------------


@dataclass
class AlertCursor:
    """What the alert sensor has seen, per key: when each asset's freshness state last changed,
    and the newest completed execution of each check (a planned one may still fail)."""

    freshness_changed_at: dict[str, float] = field(default_factory=dict)
    check_execution_ids: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> AlertCursor:
        return cls(**json.loads(cursor)) if cursor else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self))


FRESHNESS_SEVERITY = {"FAIL": "error", "WARN": "warning"}


def freshness_alerts(instance: dg.DagsterInstance, keys: list[dg.AssetKey], cursor: AlertCursor) -> list[Alert]:
    """One alert per asset whose freshness state changed to FAIL or WARN since the last tick.

    The states come from the freshness daemon (part of dagster-daemon), the same ones the UI shows.
    """
    alerts = []
    for key, record in instance.get_freshness_state_records(keys).items():
        name, changed_at, state = key.to_user_string(), record.updated_at.timestamp(), record.freshness_state.value
        if changed_at > cursor.freshness_changed_at.get(name, 0.0) and state in FRESHNESS_SEVERITY:
            message = f"freshness {state}: not materialized within its freshness policy's window"
            alerts.append(Alert("freshness", FRESHNESS_SEVERITY[state], name, message, {"state": state, "since": record.updated_at.isoformat()}))
        cursor.freshness_changed_at[name] = changed_at
    return alerts


def _check_alert(key: dg.AssetCheckKey, record) -> Alert:
    evaluation = record.event.asset_check_evaluation if record.event else None
    details = {"run_id": record.run_id, "partition": record.partition}
    if evaluation is None:
        return Alert("asset_check", "error", f"{key.asset_key.to_user_string()}:{key.name}", "check failed", details)
    details["metadata"] = {name: plain(value) for name, value in evaluation.metadata.items()}
    severity = "warning" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error"
    return Alert("asset_check", severity, f"{key.asset_key.to_user_string()}:{key.name}", evaluation.description or "check failed", details)


def check_alerts(instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey], cursor: AlertCursor) -> list[Alert]:
    """One alert per asset check whose latest completed execution failed and is new since the last tick."""
    alerts = []
    for key, record in instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys).items():
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        if record.status.value == "PLANNED" or record.id <= cursor.check_execution_ids.get(name, 0):
            continue  # not evaluated yet (the record is completed in place), or already seen
        if record.status.value == "FAILED":
            alerts.append(_check_alert(key, record))
        cursor.check_execution_ids[name] = record.id
    return alerts


def _send(context, notifier: Notifier, alerts: list[Alert]) -> None:
    for alert in alerts:
        (context.log.error if alert.severity == "error" else context.log.warning)(alert.text)
        notifier.send(alert)


@dg.sensor(
    name="alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log + notifier) when an asset fails or nears failing its freshness policy, "
    "or an asset check fails.",
)
def alert_sensor(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SensorResult:
    graph = context.repository_def.asset_graph
    cursor = AlertCursor.parse(context.cursor)
    alerts = [
        *freshness_alerts(context.instance, sorted(graph.materializable_asset_keys), cursor),
        *check_alerts(context.instance, sorted(graph.asset_check_keys), cursor),
    ]
    _send(context, notifier, alerts)
    return dg.SensorResult(cursor=cursor.dump(), skip_reason=None if alerts else "Nothing to alert on.")


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log + notifier) on every failed run of this code location, retries included.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, notifier: Notifier) -> None:
    run = context.dagster_run
    tags = run.tags
    details = {
        "job": run.job_name,
        "partition": tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start"),
        "retry_number": tags.get("dagster/retry_number", "0"),
        "max_retries": tags.get("dagster/max_retries", "0"),
        "failed_steps": [event.step_key for event in context.get_step_failure_events()],
    }
    message = context.failure_event.message or "run failed"
    _send(context, notifier, [Alert("run_failure", "error", run.run_id, message, details)])


operations_sensors = [landing_sensor, user_shard_sensor, alert_sensor, run_failure_alert]

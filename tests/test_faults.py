"""Crash recovery: ``kill -9`` inside each kind of warehouse write, then a re-run.

Real processes (tests/fault_worker.py), the real warehouse, dbt and Dagster. The kill lands
inside the write's transaction by construction: the writer runs with the test-only commit
pause of resources/warehouse.py (dbt through tests/fault_hooks/sitecustomize.py), which stops
it just before COMMIT and writes a marker file; the test waits for the marker, then kills the
process group. After the kill the warehouse holds exactly what it held before the write; after
a re-run, exactly what an uninterrupted run writes. The writer lock dies with the process, so
nothing waits on a killed run, and run monitoring marks it failed and frees its pool slot.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest
import yaml

from resources import settings
from synthetic_marketplace.generator import MarketplaceSpec, generate
from synthetic_marketplace.landing import write_landing

SPEC = MarketplaceSpec(users=200, items=150, days=45, end_date=date(2026, 6, 30), seed=11)
HOOKS = Path(__file__).parent / "fault_hooks"
WAITING = "Waiting for the warehouse write lock"
EVENT_COUNTS = "SELECT '{table}', event_date, count(*) FROM raw.{table} GROUP BY ALL"


def worker_env(home: Path, landing: Path, dagster_home: Path | None = None, **extra: str) -> dict:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home), "RECSYS_HOME": str(home),
           "RECSYS_LANDING_DIR": str(landing), "PYTHONPATH": str(HOOKS), **extra}  # fmt: skip
    if dagster_home:
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


class Worker:
    """tests/fault_worker.py in its own process group, its output in a file."""

    def __init__(self, tmp: Path, name: str, env: dict, *args: str, pause: str | None = None, skip: int = 0):
        self.marker, self.log = tmp / f"{name}.paused", tmp / f"{name}.log"
        if pause:
            env = {**env, "RECSYS_FAULT_PAUSE_AT_COMMIT": pause, "RECSYS_FAULT_PAUSE_MARKER": str(self.marker),
                   "RECSYS_FAULT_PAUSE_SKIP": str(skip)}  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "tests.fault_worker", *args], cwd=settings.PROJECT_DIR,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, predicate, what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.process.poll() is None, f"the worker ended before {what}:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{self.output()[-4000:]}"
            time.sleep(0.1)

    def kill_inside_the_write(self) -> None:
        self.wait_for(self.marker.exists, "pause inside the transaction")
        # The run and every process under it: dagster-dbt starts dbt in a session of its own.
        victims = [self.process.pid, *(child.pid for child in psutil.Process(self.process.pid).children(recursive=True))]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        psutil.wait_procs([p for p in map(_process_or_none, victims) if p], timeout=30)

    def release(self) -> None:
        Path(f"{self.marker}.release").touch()

    def finish(self, timeout: float = 300) -> str:
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise AssertionError(f"the worker did not end within {timeout} s:\n{self.output()[-6000:]}") from None
        assert returncode == 0, self.output()[-6000:]
        return self.output()


def _process_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def run_worker(tmp: Path, name: str, env: dict, *args: str) -> str:
    return Worker(tmp, name, env, *args).finish()


def counts(home: Path, sql: str) -> set[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        return set(conn.execute(sql).fetchall())


def event_counts(home: Path) -> set[tuple]:
    sql = " UNION ALL ".join(EVENT_COUNTS.format(table=t) for t in ("purchases", "wishlist", "cart"))
    return counts(home, sql + " UNION ALL SELECT 'quarantine', partition_key, count(*) FROM raw.quarantine GROUP BY ALL")


def copy_home(reference: Path, tmp: Path) -> Path:
    home = tmp / "home"
    home.mkdir()
    shutil.copy(reference / "warehouse.duckdb", home / "warehouse.duckdb")
    return home


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted run of every layer the kills target: its warehouse is the expected one."""
    tmp = tmp_path_factory.mktemp("faults")
    landing, home = tmp / "landing", tmp / "reference"
    write_landing(generate(SPEC), SPEC, landing)
    home.mkdir()
    env = worker_env(home, landing)
    days = ["--first", SPEC.start_date.isoformat(), "--last", SPEC.end_date.isoformat()]
    for name, args in (("ingest", days), ("dbt", days), ("candidates", []), ("serving_shard", []), ("marts", [])):
        run_worker(tmp, f"reference-{name}", env, name, *args)
    return home, landing


def days_args(first: date, last: date) -> list[str]:
    return ["ingest", "--first", first.isoformat(), "--last", last.isoformat()]


def test_kill_during_an_ingest_day_leaves_whole_days_and_a_rerun_completes(reference, tmp_path):
    ref_home, landing = reference
    home = tmp_path / "home"
    env = worker_env(home, landing)
    # Killed inside the third day's purchases transaction.
    victim = Worker(tmp_path, "killed", env, *days_args(SPEC.start_date, SPEC.end_date), pause="raw.purchases", skip=2)
    victim.kill_inside_the_write()
    purchases = EVENT_COUNTS.format(table="purchases")
    first_two_days = {row for row in counts(ref_home, purchases) if row[1] < date.fromordinal(SPEC.start_date.toordinal() + 2)}
    assert counts(home, purchases) == first_two_days  # two whole days committed, nothing of the third
    started = time.monotonic()
    rerun = run_worker(tmp_path, "rerun", env, *days_args(SPEC.start_date, SPEC.end_date))
    assert WAITING not in rerun, "the killed run's lock outlived it"
    assert event_counts(home) == event_counts(ref_home)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("layer", "table", "args", "sql"),
    [
        ("dbt_daily", "fct_purchases", ["--first", "2026-06-28", "--last", "2026-06-30"],
         "SELECT event_date, count(*), sum(revenue) FROM staging.fct_purchases GROUP BY ALL"),
        ("candidates", "candidates.item_vectors", [], "SELECT count(*) FROM candidates.item_vectors"),
        ("marts", "homepage_feed", [],
         "SELECT 'feed', count(*) FROM marts.homepage_feed UNION ALL SELECT 'summary', count(*) FROM marts.daily_recommendation_summary"),
    ],
    ids=["dbt_incremental_day", "candidate_table", "marts"],
)  # fmt: skip
def test_kill_during_a_rebuild_keeps_the_old_table_and_a_rerun_matches(reference, tmp_path, layer, table, args, sql):
    ref_home, landing = reference
    home = copy_home(ref_home, tmp_path)
    env = worker_env(home, landing)
    expected = counts(ref_home, sql)
    Worker(tmp_path, "killed", env, layer, *args, pause=table).kill_inside_the_write()
    assert counts(home, sql) == expected  # the transaction died whole: the old table, not half a new one
    rerun = run_worker(tmp_path, "rerun", env, layer, *args)
    assert WAITING not in rerun
    assert counts(home, sql) == expected


def test_kill_during_a_serving_shard_write_keeps_the_shard_and_a_rerun_replaces_it(reference, tmp_path):
    """The serving layer's shard writer at the function level (no model needed): 20 items per user
    are being replaced by 5 when the writer is killed."""
    ref_home, landing = reference
    home = copy_home(ref_home, tmp_path)
    env = worker_env(home, landing)
    per_user = "SELECT count(*), count(DISTINCT user_id), max(rank) FROM marts.user_recommendations"
    ((rows, users, top),) = counts(ref_home, per_user)
    assert top == 20 and rows == users * 20
    Worker(tmp_path, "killed", env, "serving_shard", "--top", "5", pause="marts.user_recommendations").kill_inside_the_write()
    assert counts(home, per_user) == {(rows, users, 20)}
    run_worker(tmp_path, "rerun", env, "serving_shard", "--top", "5")
    assert counts(home, per_user) == {(users * 5, users, 5)}


def test_two_runs_writing_different_days_at_once_both_land(reference, tmp_path):
    ref_home, landing = reference
    home = tmp_path / "home"
    env = worker_env(home, landing)
    middle = date.fromordinal(SPEC.start_date.toordinal() + SPEC.days // 2)
    # The first run holds the warehouse inside a transaction while the second one arrives.
    first = Worker(tmp_path, "first", env, *days_args(SPEC.start_date, middle), pause="raw.purchases")
    first.wait_for(first.marker.exists, "the first run's write")
    second = Worker(tmp_path, "second", env, *days_args(date.fromordinal(middle.toordinal() + 1), SPEC.end_date))
    second.wait_for(lambda: WAITING in second.output(), "the second run waiting for the lock")
    assert f"pid {first.process.pid} " in second.output()  # it says who holds the lock
    first.release()
    first.finish()
    second.finish()
    assert event_counts(home) == event_counts(ref_home)


def monitored_instance(dagster_home: Path) -> None:
    """The embedded instance (dagster_home/dagster.yaml), polled every second, with a warehouse pool
    of one slot as in production: a killed run's slot would block every later warehouse step."""
    config = yaml.safe_load((settings.PROJECT_DIR / "dagster_home" / "dagster.yaml").read_text())
    config["run_monitoring"] |= {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1}
    config["concurrency"]["pools"] = {"default_limit": 1}
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _failed_and_freed(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Failed, its slot free and its queued steps gone: the daemon frees the slots and the queue in
    two writes, and a step left queued behind a dead run would keep the next run waiting."""
    storage = instance.event_log_storage
    return (instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            and not storage.get_concurrency_info("warehouse").claimed_slots
            and run_id not in storage.get_concurrency_run_ids())  # fmt: skip


def test_a_killed_run_is_marked_failed_and_its_pool_slot_freed(reference, tmp_path):
    _, landing = reference
    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    monitored_instance(dagster_home)
    env = worker_env(home, landing, dagster_home)
    Worker(tmp_path, "killed", env, *days_args(SPEC.start_date, SPEC.end_date), pause="raw.purchases").kill_inside_the_write()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    (killed,) = instance.get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED
    assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots  # the slot the kill left taken

    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "--empty-workspace"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60  # the README's promise: the next run starts within a minute
        while not _failed_and_freed(instance, killed.run_id):
            assert time.monotonic() < deadline, "the killed run was not failed and freed within a minute"
            time.sleep(0.5)
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    failure = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "gone" in failure[-1].message or "gone" in str(failure[-1].dagster_event.event_specific_data)
    # The next run takes the pool slot and the lock at once.
    rerun = run_worker(tmp_path, "next", env, *days_args(SPEC.start_date, SPEC.end_date))
    assert WAITING not in rerun
    assert instance.get_runs(limit=1)[0].status == dg.DagsterRunStatus.SUCCESS

"""The DuckDB warehouse: one file at ``$RECSYS_HOME/warehouse.duckdb``.

DuckDB allows one writing process per file. Every writer serialises through one lock: the
resource holds an exclusive OS file lock (``warehouse.duckdb.writer.lock``, flock) for as long
as a connection is open, and the dbt steps hold the same lock around ``dbt build``. The kernel
drops the lock with the process, so a run killed with ``kill -9`` never leaves the warehouse
blocked. A writer that has to wait logs who holds the lock and since when.

``WAREHOUSE_POOL`` is the Dagster pool of the warehouse steps; in production it queues them
(deploy/dagster.yaml), the lock is what keeps one writer on the file everywhere.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from filelock import FileLock, Timeout
from pydantic import PrivateAttr

from resources import settings

WAREHOUSE_POOL = "warehouse"
# How often a waiting writer repeats who it is waiting for.
LOCK_WAIT_LOG_SECONDS = 30.0


# ---------------------------------------------------------------- the writer lock


def lock_paths(database: str) -> tuple[Path, Path]:
    """The lock file and the file that names its holder, beside the database."""
    return Path(f"{database}.writer.lock"), Path(f"{database}.writer.json")


def describe_holder(holder_file: Path) -> str:
    """Who holds the lock, from what the holder wrote on acquiring it."""
    try:
        holder = json.loads(holder_file.read_text())
    except (OSError, ValueError):
        return "another process (not yet named)"
    since = datetime.fromisoformat(holder["since"])
    held = (datetime.now(timezone.utc) - since).total_seconds()
    run = f", run {holder['run_id']}" if holder.get("run_id") else ""
    return f"pid {holder['pid']} on {holder['host']}{run} ({holder['command']}) since {holder['since']} ({held:.0f} s)"


class WriterLock:
    """The exclusive, process-wide, reentrant lock on one warehouse file."""

    def __init__(self, database: str):
        self.lock_file, self.holder_file = lock_paths(database)
        # One lock object per file and process (is_singleton), counted across threads: nested
        # connections of one process share DuckDB's instance and must not wait for themselves.
        # No soft-lock fallback: a soft lock would outlive a killed process.
        self._lock = FileLock(
            self.lock_file, thread_local=False, is_singleton=True, fallback_to_soft=False, preserve_lock_file=True
        )

    @contextmanager
    def held(self, log, run_id: str | None = None):
        self._acquire(log)
        try:
            if self._lock.lock_counter == 1:
                self._write_holder(run_id)
            yield
        finally:
            self._lock.release()

    def _acquire(self, log) -> None:
        started, timeout = time.monotonic(), 0.0
        while True:
            try:
                self._lock.acquire(timeout=timeout)
                return
            except Timeout:
                holder = describe_holder(self.holder_file)
                log.info(f"Waiting for the warehouse write lock {self.lock_file}: held by {holder}; waited {time.monotonic() - started:.0f} s")
                timeout = LOCK_WAIT_LOG_SECONDS

    def _write_holder(self, run_id: str | None) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": run_id,
            "command": " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv[:3])),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.holder_file.write_text(json.dumps(holder))


# ---------------------------------------------------------------- test hook: pause before a commit


class CommitPause:
    """Fault-injection hook for tests/test_faults.py; inert unless RECSYS_FAULT_PAUSE_AT_COMMIT is set.

    The transaction that mentions RECSYS_FAULT_PAUSE_AT_COMMIT (a table name), after skipping
    RECSYS_FAULT_PAUSE_SKIP such transactions, stops just before its COMMIT: it writes the file
    RECSYS_FAULT_PAUSE_MARKER and waits until ``<marker>.release`` exists. A test kills the
    process there, so the kill lands inside the write, not by luck.
    """

    _STATEMENT = re.compile(r"^\s*(BEGIN|COMMIT|END)\b", re.IGNORECASE)

    def __init__(self, target: str, marker: Path, skip: int):
        self.target, self.marker, self.skip = target.lower(), marker, skip
        # Per thread: dbt runs models on several threads, each in its own transaction.
        self._state = threading.local()

    @classmethod
    def from_env(cls) -> CommitPause | None:
        armed = settings.fault_pause()
        return cls(*armed) if armed else None

    def before(self, sql: str) -> None:
        state, keyword = self._state, self._STATEMENT.match(sql)
        if keyword and keyword.group(1).upper() == "BEGIN":
            state.in_transaction, state.mentions_target = True, False
        elif keyword:
            if getattr(state, "in_transaction", False) and state.mentions_target:
                self._pause_or_skip()
            state.in_transaction = False
        elif getattr(state, "in_transaction", False) and self.target in sql.lower():
            state.mentions_target = True

    def _pause_or_skip(self) -> None:
        if self.skip > 0:
            self.skip -= 1
            return
        release = Path(f"{self.marker}.release")
        self.marker.write_text(json.dumps({"pid": os.getpid(), "target": self.target}))
        while not release.exists():
            time.sleep(0.05)
        self.target = "\0"  # once per process


_COMMIT_PAUSE: list[CommitPause | None] = []


def commit_pause() -> CommitPause | None:
    """The process's hook (one skip counter for every connection), or None outside fault tests."""
    if not _COMMIT_PAUSE:
        _COMMIT_PAUSE.append(CommitPause.from_env())
    return _COMMIT_PAUSE[0]


class _PausingConnection:
    """A DuckDB connection that shows its statements to the CommitPause hook first."""

    def __init__(self, conn, pause: CommitPause):
        self._conn, self._pause = conn, pause

    def execute(self, query, *args, **kwargs):
        self._pause.before(query)
        result = self._conn.execute(query, *args, **kwargs)
        return self if result is self._conn else result

    def begin(self):
        self._pause.before("BEGIN")
        return self._conn.begin()

    def commit(self):
        self._pause.before("COMMIT")
        return self._conn.commit()

    def __getattr__(self, name):
        return getattr(self._conn, name)


# ---------------------------------------------------------------- writes


@contextmanager
def transaction(conn):
    """One all-or-nothing write: COMMIT when the block ends, ROLLBACK when it raises.

    Every writer of the warehouse goes through here, so a killed or failing step leaves the
    tables as they were. Plain SQL statements, so that the fault tests' commit pause sees them.
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---------------------------------------------------------------- the resource


class Warehouse(DuckDBResource):
    """DuckDBResource that holds the writer lock while connected and closes its connection on failure too.

    The upstream resource closes only on success; a failed step would otherwise keep the
    file locked for the rest of an in-process run (and for the tests that follow).
    """

    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id

    @contextmanager
    def write_lock(self):
        """Hold the warehouse's writer lock: for writers that open the file themselves (dbt)."""
        if self.database == ":memory:":
            yield
            return
        with WriterLock(self.database).held(dg.get_dagster_logger(), self._run_id):
            yield

    def lock_for_dbt(self, dbt_target: str | None):
        """The writer lock around a dbt command: dbt-duckdb opens this file from its own process."""
        return self.write_lock() if dbt_target in (None, "duckdb") else nullcontext()

    @contextmanager
    def get_connection(self):
        with self.write_lock(), super().get_connection() as conn:
            pause = commit_pause()
            try:
                yield _PausingConnection(conn, pause) if pause else conn
            finally:
                conn.close()


def warehouse_resource(path: str | None = None) -> Warehouse:
    database = path or str(settings.warehouse_path())
    settings.recsys_home().mkdir(parents=True, exist_ok=True)
    return Warehouse(database=database)

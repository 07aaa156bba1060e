"""deploy/dagster.yaml loads as a working instance against a real PostgreSQL (skipped without one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

PROJECT = Path(__file__).resolve().parent.parent
PG_BIN = [shutil.which(tool) for tool in ("initdb", "pg_ctl")]
# PostgreSQL refuses to run as root: as root, run it as the postgres user.
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

pytestmark = pytest.mark.skipif(not all(PG_BIN) or (AS_POSTGRES and not shutil.which("runuser")), reason="needs PostgreSQL (initdb, pg_ctl)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres():
    # Not under pytest's tmp_path: that is private to the user running pytest.
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    data = root / "pgdata"
    data.mkdir()
    if AS_POSTGRES:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    run = lambda *args: subprocess.run([*AS_POSTGRES, *args], check=True, capture_output=True, text=True)  # noqa: E731
    run(PG_BIN[0], "-D", str(data), "-U", "postgres", "--auth=trust")
    run(PG_BIN[1], "-D", str(data), "-w", "-l", str(root / "pg.log"), "-o", f"-p {port} -k {root} -h 127.0.0.1", "start")
    try:
        yield port
    finally:
        run(PG_BIN[1], "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_production_instance_stores_runs_and_events_in_postgres_and_launches_k8s_jobs(postgres, tmp_path, monkeypatch):
    env = {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres),
        "DAGSTER_PG_DB": "postgres",
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_K8S_NAMESPACE": "recsys",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "recsys-dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "deploy" / "dagster.yaml", home / "dagster.yaml")

    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("user_shards", ["u0000000000000000000-0000000000199999999"])
    instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(["raw", "purchases"]), partition="2026-06-30"))

    reopened = dg.DagsterInstance.from_config(str(home))  # what another process (the daemon) sees
    assert reopened.get_dynamic_partitions("user_shards") == ["u0000000000000000000-0000000000199999999"]
    assert reopened.get_latest_materialization_event(dg.AssetKey(["raw", "purchases"])).dagster_event.partition == "2026-06-30"
    assert type(reopened.run_storage).__name__ == "PostgresRunStorage"
    assert type(reopened.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(reopened.run_coordinator).__name__ == "QueuedRunCoordinator"
    # Building the launcher needs a cluster; its configuration is checked by the instance schema.
    assert reopened.get_ref().run_launcher_data.class_name == "K8sRunLauncher"
    assert reopened.run_retries_enabled

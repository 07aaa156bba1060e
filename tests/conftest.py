"""Shared fixtures: a small synthetic marketplace, materialized through the real graph once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

# In-process tests share one partition start (partitions/daily.py would otherwise follow whatever
# landed in the developer's own RECSYS_HOME); subprocess runs set their own environment.
os.environ.setdefault("RECSYS_FIRST_DAY", "2026-01-01")

from synthetic_marketplace.generator import MarketplaceSpec, generate
from synthetic_marketplace.landing import write_landing

# Small enough for a 2-core CI machine, large enough for the planted structure to show.
SMALL_MARKET = MarketplaceSpec(users=800, items=500, days=60, end_date=date(2026, 6, 30), seed=7)


@dataclass
class Platform:
    home: Path
    landing: Path
    spec: MarketplaceSpec
    run: dg.ExecuteInProcessResult | None = None

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def resources(self) -> dict:
        from resources import default_resources

        return default_resources()

    def query(self, sql: str):
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    def df(self, sql: str):
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.execute(sql).df()


def point_platform_at(home: Path, landing: Path) -> None:
    os.environ["RECSYS_HOME"] = str(home)
    os.environ["RECSYS_LANDING_DIR"] = str(landing)


@pytest.fixture(scope="session")
def market_landing(tmp_path_factory) -> tuple[Path, MarketplaceSpec]:
    landing = tmp_path_factory.mktemp("landing")
    write_landing(generate(SMALL_MARKET), SMALL_MARKET, landing)
    return landing, SMALL_MARKET


@pytest.fixture(scope="session")
def featured_platform(tmp_path_factory, market_landing) -> Platform:
    """The small marketplace with ingest and features materialized for all its days."""
    from recsys_assets.features.assets import feature_assets
    from recsys_assets.ingest.assets import ingest_assets
    from recsys_assets.runner import materialize_everything

    landing, spec = market_landing
    home = tmp_path_factory.mktemp("home")
    point_platform_at(home, landing)
    platform = Platform(home, landing, spec)
    defs = dg.Definitions(assets=[*ingest_assets, *feature_assets], resources=platform.resources())
    platform.run = materialize_everything(defs, instance=dg.DagsterInstance.ephemeral())[0]
    assert platform.run.success
    return platform


# The README's first command at a size where the planted structure shows in the metrics:
# tests/test_main_run.py checks the tables, tests/test_quality.py the LLM's quality.
MAIN_RUN_USERS = 400
MAIN_RUN_FLAGS = ["--users", str(MAIN_RUN_USERS), "--items", "300", "--days", "90", "--end-date", "2026-06-30", "--seed", "3"]


@dataclass
class MainRun:
    result: subprocess.CompletedProcess
    home: Path
    env: dict

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as conn:
            return conn.execute(sql).fetchall()

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])


@pytest.fixture(scope="session")
def main_run(tmp_path_factory) -> MainRun:
    """``recsys run`` on a fresh RECSYS_HOME / DAGSTER_HOME, as a new user runs it."""
    home = tmp_path_factory.mktemp("recsys_home")
    (home / "dagster").mkdir()
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "RECSYS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "RECSYS_USERS_PER_SHARD": str(MAIN_RUN_USERS // 2)}  # two shards: the marts read across shards  # fmt: skip
    result = subprocess.run([str(bin_dir / "recsys"), "run", *MAIN_RUN_FLAGS], env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return MainRun(result, home, env)

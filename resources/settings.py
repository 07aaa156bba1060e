"""Where the platform keeps its data, resolved from the environment.

Every path the platform touches derives from two variables so that the same code location
serves a laptop, CI and production without edits:

- ``RECSYS_HOME``: the platform's own state (warehouse, artifacts). Default: ``<project>/data``.
- ``RECSYS_LANDING_DIR``: where raw exports land (see README "Bring your own data").
  Default: ``$RECSYS_HOME/landing``, filled by the synthetic marketplace generator.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def recsys_home() -> Path:
    return Path(os.environ.get("RECSYS_HOME", PROJECT_DIR / "data")).expanduser().resolve()


def landing_dir() -> Path:
    default = recsys_home() / "landing"
    return Path(os.environ.get("RECSYS_LANDING_DIR", default)).expanduser().resolve()


def warehouse_path() -> Path:
    return recsys_home() / "warehouse.duckdb"


def artifacts_dir() -> Path:
    return recsys_home() / "artifacts"


def users_per_shard() -> int:
    """``RECSYS_USERS_PER_SHARD``: about how many users a user-range shard holds (one GPU job's worth)."""
    return int(os.environ.get("RECSYS_USERS_PER_SHARD", "1000"))

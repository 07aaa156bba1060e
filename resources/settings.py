"""Every ``RECSYS_*`` switch of the platform, read here and nowhere else.

The same code location serves a laptop, CI and production without edits: what differs is
the environment. ``SWITCHES`` names each variable with its default and what it changes; the
README's "Settings" table is generated from it (``python -m resources.settings``) and a test
keeps the two equal. Values are read when asked for, not at import, so a test or a CLI that
sets a variable before building the definitions is honoured.

Two programs outside the orchestrator read their own copies: dbt's ``profiles.yml``
(``RECSYS_WAREHOUSE`` and the Spark connection) and the GPU jobs (``RECSYS_ARTIFACTS_ROOT``,
set on the pod by the runner), because a GPU image carries neither this package nor its
imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Switch:
    name: str
    default: str
    description: str
    read_by: str = "the code location"


SWITCHES = {
    switch.name: switch
    for switch in (
        # ---- where things are
        Switch("RECSYS_HOME", "<project>/data", "The platform's state: warehouse.duckdb, artifacts, alerts.log, first_day."),
        Switch("RECSYS_LANDING_DIR", "$RECSYS_HOME/landing", "Where raw exports land (README, \"Bring your own data\")."),
        Switch("RECSYS_FIRST_DAY", "the first landing day", "First daily partition (YYYY-MM-DD); else the first landing day, recorded once in $RECSYS_HOME/first_day."),
        Switch("RECSYS_SOURCE_TIMEZONE", "UTC", "IANA zone of landing timestamps that carry no offset."),
        Switch("RECSYS_USERS_PER_SHARD", "1000", "About how many users a new user-range shard holds (one GPU job's worth)."),
        Switch("RECSYS_ALERT_WEBHOOK", "", "Incoming-webhook URL that also receives every alert of $RECSYS_HOME/alerts.log."),
        # ---- engines
        Switch("RECSYS_DBT_TARGET", "duckdb", "dbt target of the feature and mart models: duckdb or spark."),
        Switch("RECSYS_CANDIDATE_ENGINE", "sklearn", "Engine of the candidates layer: sklearn (in the run process) or spark."),
        Switch("RECSYS_GPU_MODE", "local", "Where GPU steps run: local (a subprocess) or kubernetes (a pod per step)."),
        Switch("RECSYS_GPU_STEPS", "deploy/gpu-steps.yaml in kubernetes mode", "Pod settings file of the GPU steps."),
        Switch("RECSYS_GPU_IMAGE", "the pod settings file's", "Image of the GPU pods."),
        Switch("RECSYS_GPU_NAMESPACE", "the pod settings file's", "Kubernetes namespace of the GPU pods."),
        Switch("RECSYS_ARTIFACTS_CLAIM", "the pod settings file's", "PersistentVolumeClaim of the shared artifact volume the pods mount."),
        Switch("RECSYS_BASE_MODEL", "tiny-llama locally, SmolLM2-135M on Kubernetes", "Base model the LoRA fine-tune starts from."),
        # ---- Spark (the candidate engine's session; dbt's profile reads the connection ones)
        Switch("RECSYS_SPARK_MASTER", "local[*]", "Spark master of the candidate engine: local[*], spark://..., k8s://... or yarn."),
        Switch("RECSYS_SPARK_DRIVER_MEMORY", "4g", "Driver memory when the session starts the JVM (local mode)."),
        Switch("RECSYS_SPARK_SHUFFLE_PARTITIONS", "16", "spark.sql.shuffle.partitions: the starting point adaptive execution tunes from."),
        Switch("RECSYS_SPARK_WAREHOUSE", "$RECSYS_HOME/spark-warehouse", "spark.sql.warehouse.dir: where Spark tables live."),
        Switch("RECSYS_SPARK_METHOD", "session", "dbt-spark connection: session (in process), thrift or http.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_HOST", "localhost", "Thrift server or SQL endpoint host.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_PORT", "10000", "Its port (443 for http).", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_USER", "dbt", "Thrift user.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_AUTH", "NONE", "Thrift authentication: NONE, NOSASL or KERBEROS.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_USE_SSL", "false", "Thrift over TLS.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_TOKEN", "", "http: the endpoint's access token.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_CLUSTER", "", "http: the cluster id.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_SCHEMA", "default", "Spark schema for what names no schema of its own.", "dbt_project/profiles.yml"),
        Switch("RECSYS_SPARK_THREADS", "2", "dbt threads on Spark.", "dbt_project/profiles.yml"),
        Switch("RECSYS_WAREHOUSE", "$RECSYS_HOME/warehouse.duckdb", "The DuckDB file dbt opens; exported by the dbt resource from RECSYS_HOME, not set by hand.", "dbt_project/profiles.yml"),
        Switch("RECSYS_ARTIFACTS_ROOT", "$RECSYS_HOME/artifacts", "The artifact store's root inside a GPU job; set by the GPU runner.", "gpu_jobs/"),
        # ---- test hooks (tests/test_faults.py)
        Switch("RECSYS_FAULT_PAUSE_AT_COMMIT", "", "Test hook: the warehouse write naming this table stops before its COMMIT."),
        Switch("RECSYS_FAULT_PAUSE_MARKER", "", "Test hook: the file the paused writer creates."),
        Switch("RECSYS_FAULT_PAUSE_SKIP", "0", "Test hook: matching transactions to let through first."),
    )
}


def value(name: str) -> str | None:
    """The variable as set, or None: the one place the platform reads its environment."""
    if name not in SWITCHES:
        raise KeyError(f"{name} is not a platform setting: add it to resources/settings.py SWITCHES")
    return os.environ.get(name) or None


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    chosen = value(name) or default
    if chosen not in allowed:
        raise ValueError(f"{name}={chosen!r}: expected one of {', '.join(allowed)}")
    return chosen


# ---------------------------------------------------------------- paths


def recsys_home() -> Path:
    return Path(value("RECSYS_HOME") or PROJECT_DIR / "data").expanduser().resolve()


def landing_dir() -> Path:
    return Path(value("RECSYS_LANDING_DIR") or recsys_home() / "landing").expanduser().resolve()


def landing_dir_is_configured() -> bool:
    return value("RECSYS_LANDING_DIR") is not None


def warehouse_path() -> Path:
    return recsys_home() / "warehouse.duckdb"


def artifacts_dir() -> Path:
    return recsys_home() / "artifacts"


# ---------------------------------------------------------------- data


def first_day() -> str | None:
    return value("RECSYS_FIRST_DAY")


def source_timezone() -> str:
    return value("RECSYS_SOURCE_TIMEZONE") or "UTC"


def users_per_shard() -> int:
    return int(value("RECSYS_USERS_PER_SHARD") or 1000)


def alert_webhook() -> str:
    return value("RECSYS_ALERT_WEBHOOK") or ""


# ---------------------------------------------------------------- engines


def dbt_target() -> str:
    return _choice("RECSYS_DBT_TARGET", "duckdb", ("duckdb", "spark"))


def candidate_engine() -> str:
    return _choice("RECSYS_CANDIDATE_ENGINE", "sklearn", ("sklearn", "spark"))


def gpu_mode() -> str:
    return _choice("RECSYS_GPU_MODE", "local", ("local", "kubernetes"))


def gpu_steps_file() -> Path | None:
    """The pod settings file: RECSYS_GPU_STEPS, else deploy/gpu-steps.yaml in kubernetes mode."""
    path = value("RECSYS_GPU_STEPS") or (PROJECT_DIR / "deploy" / "gpu-steps.yaml" if gpu_mode() == "kubernetes" else None)
    return Path(path) if path else None


def gpu_pod_overrides() -> dict[str, str]:
    """Pod settings the deployment's environment gives (deploy/helm/values.yaml), over the file's."""
    fields = {"image": "RECSYS_GPU_IMAGE", "namespace": "RECSYS_GPU_NAMESPACE", "artifacts_claim": "RECSYS_ARTIFACTS_CLAIM"}
    return {field: value(name) for field, name in fields.items() if value(name)}


def base_model() -> str | None:
    return value("RECSYS_BASE_MODEL")


def spark_properties() -> dict[str, str]:
    """The candidate engine's Spark properties that the environment sets."""
    return {
        "spark.master": value("RECSYS_SPARK_MASTER") or "local[*]",
        "spark.driver.memory": value("RECSYS_SPARK_DRIVER_MEMORY") or "4g",
        "spark.sql.shuffle.partitions": value("RECSYS_SPARK_SHUFFLE_PARTITIONS") or "16",
        "spark.sql.warehouse.dir": value("RECSYS_SPARK_WAREHOUSE") or str(recsys_home() / "spark-warehouse"),
    }


# ---------------------------------------------------------------- test hooks


def fault_pause() -> tuple[str, Path, int] | None:
    """(table, marker file, transactions to skip) when tests/test_faults.py arms the commit pause."""
    target = value("RECSYS_FAULT_PAUSE_AT_COMMIT")
    if not target:
        return None
    return target, Path(value("RECSYS_FAULT_PAUSE_MARKER") or ""), int(value("RECSYS_FAULT_PAUSE_SKIP") or 0)


def markdown_table() -> str:
    """The README's settings table."""
    rows = ["| variable | default | what it changes | read by |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | {s.default or '(unset)'} | {s.description} | {s.read_by} |" for s in SWITCHES.values()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

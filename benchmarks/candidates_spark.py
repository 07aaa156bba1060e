"""The candidate layer on both engines, side by side: scikit-learn (embedded) vs Spark.

    .venv/bin/python benchmarks/candidates_spark.py --users 100000,1000000

For every scale a fresh process generates the synthetic marketplace and loads its purchases
as ``staging.fct_purchases`` into a scratch DuckDB warehouse (benchmarks/candidates.py does
both), then runs every candidate step with the assets' default configuration, first with the
scikit-learn steps (steps.py), then with the Spark steps (spark.py, ``--spark-master``, by
default local mode on every core of this machine). The table shows seconds and peak memory
per step and engine, so the point where Spark's distribution pays for its overhead (JVM,
shuffles, Python workers) is visible; on one machine that point comes late, if at all, since
Spark's gain is adding machines.

Peak memory is the sum of the per-process peak resident sizes of this process and its
children (the Spark JVM and its Python workers), reset before every step through
/proc/<pid>/clear_refs (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "benchmarks")]

from candidates import load_average, load_purchases, marketplace_spec  # noqa: E402  (benchmarks/candidates.py)

RESULT_PREFIX = "RESULT "
ENGINES = ("sklearn", "spark")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="100000,1000000", help="comma-separated user counts (default: %(default)s)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="engines to run (default: %(default)s)")
    parser.add_argument("--spark-master", default=f"local[{os.cpu_count()}]", help="Spark master (default: %(default)s)")
    parser.add_argument("--spark-driver-memory", default="8g", help="driver memory in local mode (default: %(default)s)")
    parser.add_argument("--items-per-user", type=float, default=2 / 3, help="catalogue size per user (default: the generator's 2/3)")
    parser.add_argument("--days", type=int, default=180, help="days of purchases generated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)  # internal: run one scale in this process
    return parser.parse_args(argv)


# ---------------------------------------------------------------- memory of a process tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    for child in children.read_text().split() if children.exists() else []:
        found += process_tree(int(child))
    return found


def reset_peaks() -> None:
    for pid in process_tree(os.getpid()):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass  # the process ended meanwhile


def peak_mb() -> int:
    total = 0
    for pid in process_tree(os.getpid()):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return round(total / 1024)


# ---------------------------------------------------------------- one scale (worker process)


def emit(**row) -> None:
    print(RESULT_PREFIX + json.dumps(row, default=str), flush=True)


def measure(users: int, engine: str, step: str, action: Callable[[], object]) -> None:
    reset_peaks()
    started = time.perf_counter()
    report = action()
    rows = getattr(report, "rows", None)
    emit(users=users, engine=engine, step=step, seconds=round(time.perf_counter() - started, 2), peak_mb=peak_mb(), rows=rows)


def candidate_layer(engine_steps, conn) -> list[tuple[str, Callable[[], object]]]:
    """Every step in graph order with the assets' default configs."""
    from recsys_assets.candidates import config

    neighbours = config.NeighboursConfig().model_dump()
    return [
        ("item_vectors", lambda: engine_steps.item_vectors(conn, **config.ItemVectorsConfig().model_dump())),
        ("user_vectors", lambda: engine_steps.user_vectors(conn, **config.UserVectorsConfig().model_dump())),
        ("interest_clusters", lambda: engine_steps.interest_clusters(conn, **config.InterestClustersConfig().model_dump())),
        ("user_interest_clusters", lambda: engine_steps.user_interest_clusters(conn, **config.UserInterestClustersConfig().model_dump())),
        ("user_cluster_candidates", lambda: engine_steps.user_cluster_candidates(conn, **config.UserClusterCandidatesConfig().model_dump())),
        ("similar_items", lambda: engine_steps.similar_items(conn, **neighbours)),
        ("similar_users", lambda: engine_steps.similar_users(conn, **neighbours)),
    ]


def engine_steps(engine: str, args: argparse.Namespace):
    from resources.artifacts import ArtifactStore
    from resources.candidate_engine import CandidateEngine

    if engine == "sklearn":
        return CandidateEngine(engine=engine, artifacts=ArtifactStore()).steps()
    from resources.spark import spark_resource

    overrides = {"spark.master": args.spark_master, "spark.driver.memory": args.spark_driver_memory, "spark.ui.enabled": "false"}
    spark = spark_resource(overrides)
    spark.spark_session.sparkContext.setLogLevel("ERROR")  # started here, outside the timed steps
    return CandidateEngine(engine=engine, artifacts=ArtifactStore(), spark=spark).steps()


def run_scale(users: int, args: argparse.Namespace) -> None:
    import duckdb

    from synthetic_marketplace.generator import generate

    spec = marketplace_spec(users, args)
    emit(users=users, engine="setup", step="config", items=spec.items)
    with tempfile.TemporaryDirectory() as home:
        os.environ["RECSYS_HOME"] = home  # the Spark engine's Parquet goes to this artifact store
        with duckdb.connect(str(Path(home) / "warehouse.duckdb")) as conn:
            market = generate(spec)
            load_purchases(conn, spec, market)
            del market
            for engine in args.engines.split(","):
                module = engine_steps(engine, args)
                for step, action in candidate_layer(module, conn):
                    measure(users, engine, step, action)


# ---------------------------------------------------------------- all scales (parent process)


def run_in_subprocess(users: int, argv: list[str]) -> list[dict]:
    """One scale per process, so memory, caches and the JVM do not carry over between scales."""
    command = [sys.executable, __file__, *argv, "--scale", str(users)]
    rows = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}) as process:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX):
                rows.append(json.loads(line[len(RESULT_PREFIX) :]))
                print(f"  {rows[-1]}", flush=True)
    if process.returncode:
        print(f"  (scale {users:,} failed with exit code {process.returncode})", flush=True)
    return rows


def print_table(rows: list[dict], scales: list[int], engines: list[str]) -> None:
    """Per step, seconds / peak MB of every engine at every scale, side by side."""
    rows = [r for r in rows if r["engine"] != "setup"]
    cells = {(r["users"], r["engine"], r["step"]): f"{r['seconds']:.1f}s / {r['peak_mb']:,} MB" for r in rows}
    steps = list(dict.fromkeys(r["step"] for r in rows))
    columns = [(users, engine) for users in scales for engine in engines]
    print(f"\n{'step':<26}" + "".join(f" {f'{users:,} users, {engine}':>24}" for users, engine in columns))
    for step in steps:
        print(f"{step:<26}" + "".join(f" {cells.get((users, engine, step), '-'):>24}" for users, engine in columns))
    totals = {column: sum(r["seconds"] for r in rows if (r["users"], r["engine"]) == column) for column in columns}
    print(f"{'layer total':<26}" + "".join(f" {f'{totals[column]:.1f}s':>24}" for column in columns))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scale:
        run_scale(args.scale, args)
        return
    scales, engines = [int(u) for u in args.users.split(",")], args.engines.split(",")
    forwarded = [
        f"--engines={args.engines}",
        f"--spark-master={args.spark_master}",
        f"--spark-driver-memory={args.spark_driver_memory}",
        f"--items-per-user={args.items_per_user}",
        f"--days={args.days}",
        f"--seed={args.seed}",
    ]
    print(f"Candidate layer, {' vs '.join(engines)}, on {os.cpu_count()} cores (Spark master {args.spark_master})")
    print(f"load average before: {load_average()}  (other work on the machine slows every step)")
    rows = [row for users in scales for row in run_in_subprocess(users, forwarded)]
    print_table(rows, scales, engines)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()

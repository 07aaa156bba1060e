"""Time the candidates layer at growing scale: seconds and peak memory per step.

    .venv/bin/python benchmarks/candidates.py --users 10000,100000,1000000

For every scale a fresh process generates a synthetic marketplace (items scaled with users),
loads its purchases into a scratch DuckDB warehouse as ``staging.fct_purchases``, and runs
the same step functions the Dagster assets run (recsys_assets/candidates/steps.py), with
the assets' default configuration except the number of interest clusters, which grows with
the catalogue (--items-per-cluster). Similar items and users use exact search up to
``search_list_size`` rows and inverted-file search beyond; the recall of that search against
exact search on a sample is printed with them.

Peak memory is the process's peak resident set size during the step (Linux: the peak is
reset before each step through /proc/self/clear_refs), so it includes what the process
already held (the interpreter, DuckDB's buffer cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from measure import cpu_seconds, emit, load_average, marketplace_spec, run_scale, scale_parser  # noqa: E402  (benchmarks/ beside this script)
from recsys_assets.candidates.report import StepReport  # noqa: E402  (needs the project on sys.path)

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scale_parser(__doc__, "10000,100000,1000000", 180)
    parser.add_argument("--items-per-cluster", type=int, default=500, help="interest clusters = max(config default, items / this)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- one scale (worker process)


def reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(step: str, scale: int, action):
    """Run ``action`` and emit its seconds and peak memory; returns what the action returned."""
    exact_peak = reset_peak_memory()
    started, cpu_started = time.perf_counter(), cpu_seconds(children=False)
    value = action()
    seconds, cpu = time.perf_counter() - started, cpu_seconds(children=False) - cpu_started
    report = value if isinstance(value, StepReport) else None
    emit(
        users=scale,
        step=step,
        seconds=round(seconds, 2),
        cpu_seconds=round(cpu, 2),
        peak_mb=round(peak_memory_mb()),
        peak_is_per_step=exact_peak,
        rows=report.rows if report else value if isinstance(value, int) else None,
        phases=report.seconds if report else None,
        recall=report.stats.get("recall_vs_exact") if report else None,
        search=_search(report.stats) if report else None,
    )
    return value


def _search(stats: dict) -> str | None:
    return f"{stats['search_lists']} lists x {stats['search_probes']} probes" if "search_lists" in stats else None


def load_purchases(conn, spec, market) -> int:
    """staging.fct_purchases with the columns the candidate steps read; returns its row count."""
    purchases = market.purchases[["user_id", "item_id", "seconds"]]
    start = datetime.combine(spec.start_date, datetime.min.time())
    conn.register("generated", purchases)
    conn.execute("CREATE SCHEMA staging")
    conn.execute(
        f"""
        CREATE TABLE staging.fct_purchases AS
        SELECT CAST(ts AS DATE) AS event_date, user_id, item_id, ts
        FROM (SELECT user_id, item_id, TIMESTAMP '{start}' + to_seconds(round(seconds)::BIGINT) AS ts FROM generated)
        """
    )
    conn.unregister("generated")
    return len(purchases)


def measure_scale(users: int, args: argparse.Namespace) -> None:
    import duckdb

    from recsys_assets.candidates import steps
    from recsys_assets.candidates.config import (
        InterestClustersConfig,
        ItemVectorsConfig,
        NeighboursConfig,
        UserClusterCandidatesConfig,
        UserInterestClustersConfig,
        UserVectorsConfig,
    )

    from synthetic_marketplace.generator import generate

    spec = marketplace_spec(users, args)
    item_config, user_config = ItemVectorsConfig(), UserVectorsConfig()
    clusters = InterestClustersConfig(clusters=max(InterestClustersConfig().clusters, spec.items // args.items_per_cluster))
    user_clusters, candidates, neighbours = UserInterestClustersConfig(), UserClusterCandidatesConfig(), NeighboursConfig()
    emit(users=users, step="config", items=spec.items, clusters=clusters.clusters, dimensions=item_config.dimensions,
         neighbours=neighbours.neighbours, candidates_per_user=candidates.candidates_per_user)
    market = measured("generate marketplace (setup)", users, lambda: generate(spec))

    with tempfile.TemporaryDirectory() as scratch, duckdb.connect(str(Path(scratch) / "warehouse.duckdb")) as conn:
        measured("load purchases (setup)", users, lambda: load_purchases(conn, spec, market))
        del market
        layer = [
            ("item_vectors", lambda: steps.item_vectors(conn, history_days=item_config.history_days, dimensions=item_config.dimensions, seed=item_config.seed)),
            ("user_vectors", lambda: steps.user_vectors(conn, history_days=user_config.history_days, recency_half_life_days=user_config.recency_half_life_days)),
            ("interest_clusters", lambda: steps.interest_clusters(conn, clusters=clusters.clusters, seed=clusters.seed)),
            ("user_interest_clusters", lambda: steps.user_interest_clusters(conn, clusters_per_user=user_clusters.clusters_per_user)),
            ("user_cluster_candidates", lambda: steps.user_cluster_candidates(conn, history_days=candidates.history_days, candidates_per_user=candidates.candidates_per_user)),
            ("similar_items", lambda: steps.similar_items(conn, **neighbours.model_dump())),
            ("similar_users", lambda: steps.similar_users(conn, **neighbours.model_dump())),
        ]
        for step, action in layer:
            measured(step, users, action)


# ---------------------------------------------------------------- all scales (parent process)


def print_row(row: dict) -> None:
    if row["step"] == "config":
        print(
            f"\n== {row['users']:,} users, {row['items']:,} items; "
            f"{row['clusters']} clusters, {row['dimensions']} dims, K={row['neighbours']}, N={row['candidates_per_user']}",
            flush=True,
        )
        print(f"{'step':<30} {'seconds':>9} {'cpu s':>9} {'peak MB':>9} {'rows':>12}  phases (wall s) / search", flush=True)
        return
    phases = " ".join(f"{k}={v:.1f}" for k, v in (row["phases"] or {}).items())
    search = f"  [{row['search']}, recall@K vs exact {row['recall']:.3f}]" if row.get("recall") is not None else ""
    rows = f"{row['rows']:,}" if row["rows"] is not None else ""
    print(f"{row['step']:<30} {row['seconds']:>9.2f} {row['cpu_seconds']:>9.2f} {row['peak_mb']:>9,} {rows:>12}  {phases}{search}", flush=True)


def print_growth(rows: list[dict], scales: list[int]) -> None:
    """Seconds and peak memory per step side by side across scales, to see how cost grows."""
    by_key = {(r["users"], r["step"]): r for r in rows}
    steps = [r["step"] for r in rows if r["users"] == scales[0] and r["step"] != "config"]

    def cell(users: int, step: str) -> str:
        row = by_key.get((users, step))
        return f"{row['seconds']:.1f} / {row['cpu_seconds']:.1f} / {row['peak_mb']:,}" if row else "-"

    print(f"\n{'step (wall s / cpu s / peak MB)':<30}" + "".join(f" {users:>20,} users" for users in scales))
    for step in steps:
        print(f"{step:<30}" + "".join(f" {cell(users, step):>26}" for users in scales))
    layer = [r for r in rows if "(setup)" not in r["step"] and r["step"] != "config"]
    totals = [
        f"{sum(r['seconds'] for r in layer if r['users'] == users):.1f} / {sum(r['cpu_seconds'] for r in layer if r['users'] == users):.1f}"
        for users in scales
    ]
    print(f"{'layer total (without setup)':<30}" + "".join(f" {total:>26}" for total in totals))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scale:
        measure_scale(args.scale, args)
        return
    scales = [int(u) for u in args.users.split(",")]
    forwarded = [
        f"--items-per-user={args.items_per_user}",
        f"--items-per-cluster={args.items_per_cluster}",
        f"--days={args.days}",
        f"--seed={args.seed}",
    ]
    print(f"Candidates layer benchmark on {os.cpu_count()} cores; scales: {', '.join(f'{s:,}' for s in scales)} users")
    print(f"load average before: {load_average()}  (other work on the machine slows every step)")
    rows = [row for users in scales for row in run_scale(__file__, forwarded, users, print_row)]
    print_growth(rows, scales)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()

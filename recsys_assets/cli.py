"""``recsys``: the platform's headless commands.

    recsys generate   write a synthetic marketplace into the landing folder
    recsys run        materialize every layer for all days present in the landing data
    recsys tables     print the warehouse tables with their row counts

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default: the project's
``dagster_home/``, the same one ``make dev`` uses), so the UI shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

from resources import settings
from synthetic_marketplace.shapes import SHAPES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write a synthetic marketplace into the landing folder")
    add_generator_arguments(generate)
    generate.add_argument("--out", type=Path, default=None, help="landing folder (default: $RECSYS_LANDING_DIR)")

    run = commands.add_parser(
        "run",
        help="materialize all assets for every day in the landing data",
        description="Materialize every layer for all days present in the landing data. When the landing folder is "
        "empty and RECSYS_LANDING_DIR is not set, a synthetic marketplace is generated first (sized by the flags below).",
    )
    add_generator_arguments(run)

    commands.add_parser("tables", help="print the warehouse tables with their row counts")

    args = parser.parse_args(argv)
    if args.command == "generate":
        generate_landing(args, args.out or settings.landing_dir())
    elif args.command == "run":
        run_all(args)
    print_tables()
    return 0


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=3_000, help="number of users (default: 3000)")
    parser.add_argument("--items", type=int, default=2_000, help="number of items (default: 2000)")
    parser.add_argument("--days", type=int, default=180, help="days of events (default: 180, about 6 months)")
    parser.add_argument(
        "--end-date", type=date.fromisoformat, default=date.today() - timedelta(days=1), help="last day of events (default: yesterday)"
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="landing file format")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="default",
        help="how often users buy an item again: default (about a third of a period's purchases are repeats), "
        "grocery (staples bought every 1-3 weeks in small baskets dominate), durable (infrequent purchases, "
        "almost never the same item twice; complements and category tastes predict the next one)",
    )


def generate_landing(args: argparse.Namespace, landing: Path) -> None:
    from synthetic_marketplace.generator import MarketplaceSpec, generate
    from synthetic_marketplace.landing import write_landing
    from synthetic_marketplace.shapes import repeat_share

    spec = MarketplaceSpec(
        users=args.users,
        items=args.items,
        days=args.days,
        end_date=args.end_date,
        seed=args.seed,
        file_format=args.format,
        shape=args.shape,
    )
    started = time.perf_counter()
    market = generate(spec)
    counts = write_landing(market, spec, landing)
    summary = ", ".join(f"{n:,} {name}" for name, n in counts.items())
    repeats = repeat_share(market.purchases, spec.days)
    print(
        f"Synthetic {spec.shape} marketplace {spec.start_date}..{spec.end_date} in {landing}: {summary}; "
        f"{repeats:.0%} of the last 14 days' purchases are repeats ({time.perf_counter() - started:.1f}s)"
    )


def run_all(args: argparse.Namespace) -> None:
    landing = settings.landing_dir()
    if not (landing / "purchases").exists() and not any(landing.glob("purchases.*")):
        if settings.landing_dir_is_configured():
            sys.exit(f"No purchases in RECSYS_LANDING_DIR={landing}. See 'Bring your own data' in README.md.")
        generate_landing(args, landing)

    os.environ.setdefault("DAGSTER_HOME", str(settings.PROJECT_DIR / "dagster_home"))
    quiet_library_warnings()
    from recsys_assets.definitions import defs
    from recsys_assets.progress import everything_else_to, say
    from recsys_assets.runner import materialize_everything

    log_file = settings.recsys_home() / "logs" / f"recsys-run-{time.strftime('%Y%m%dT%H%M%S')}.log"
    print(f"Progress below; dbt's output, the GPU jobs' and warnings go to {log_file}", flush=True)
    with everything_else_to(log_file):
        results = materialize_everything(defs, log=say)
    if not all(result.success for result in results):
        sys.exit(f"A run failed: see the lines above, {log_file} and the run in the Dagster UI (make dev).")


def quiet_library_warnings() -> None:
    """Dagster's beta/preview notices and the libraries' deprecation notices are for the developers of
    this code (the test suite shows them), not for someone running it: they drown the progress lines.
    PYTHONWARNINGS carries the same filter into the GPU job subprocesses."""
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")


def print_tables() -> None:
    import duckdb

    path = settings.warehouse_path()
    if not path.exists():
        return
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() ORDER BY schema_name, table_name"
        ).fetchall()
        print(f"\nWarehouse {path}")
        print(f"{'table':<45} {'rows':>12}")
        for schema, table, _ in rows:
            count = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            print(f"{schema + '.' + table:<45} {count:>12,}")


if __name__ == "__main__":
    raise SystemExit(main())

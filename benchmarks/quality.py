"""Quality benchmark: the LLM against every baseline, on several data shapes and seeds.

    .venv/bin/python benchmarks/quality.py --quick          # a few minutes per data set
    .venv/bin/python benchmarks/quality.py                  # the full run the README reports
    .venv/bin/python benchmarks/quality.py --datasets grocery,public --seeds 0,1,2

For every data set and seed, a worker process generates (or converts) a landing folder,
materializes the real graph up to ``evaluation/recommendation_metrics`` on a fresh warehouse
and instance (ingest, dbt features, candidates, tokenizer, prompts, LoRA training, the engine,
the LLM's test recommendations through the product's generation path, every baseline), and
reads the scores from ``marts.recommendation_metrics``. The parent prints one table per data
set, the mean and spread over seeds, with seconds per stage, and writes them to
``benchmarks/results/`` (``--update-readme`` also replaces the README's quality section).

Data sets: ``default`` (the synthetic marketplace of ``make run``), ``grocery`` (repeat
purchases dominate) and ``durable`` (repeat purchases are rare): shapes of the generator,
see ``recsys generate --help``; ``public``: a real interaction log shipped inside a PyPI
package, converted by benchmarks/public_data.py. The seed varies the synthetic data, the
training and the sampling; on the public data only the training and the sampling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

# benchmarks/quality_report.py: a script's own folder is on sys.path, in the worker processes too.
from quality_report import report, update_readme

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"
DATASETS = ["default", "grocery", "durable", "public"]
# Measured at these sizes on 2 idle cores: one seed over the 4 data sets takes 39 min (default 6,
# grocery 9, durable 3.5, public 21), so 3 seeds take about 2 h; --seeds 0,1 fits a shorter slot.
FULL = {"users": 1_000, "items": 1_000, "days": 180, "months": 6, "seeds": [0, 1, 2]}
# Training dominates (about 2/3 of a run); on the public data the prompts are full (300+ purchases a household).
QUICK = {"users": 300, "items": 200, "days": 90, "months": 3, "seeds": [0, 1]}
END_DATE = date(2026, 6, 30)  # fixed, so that a rerun on another day sees the same data


# --- worker: one data set, one seed, one fresh platform ----------------------------------


def write_landing(dataset: str, landing: Path, sizes: dict, seed: int) -> date:
    """The landing folder of ``dataset``; returns its first day."""
    if dataset == "public":
        from public_data import write_landing as write_public

        stats = write_public("default", landing, max_users=sizes["users"], seed=0, months=sizes["months"])
        return date.fromisoformat(str(stats["first_day"]))
    from synthetic_marketplace.generator import MarketplaceSpec, generate
    from synthetic_marketplace.landing import write_landing as write_synthetic

    shape = {} if dataset == "default" else {"shape": dataset}
    spec = MarketplaceSpec(users=sizes["users"], items=sizes["items"], days=sizes["days"], end_date=END_DATE, seed=seed, **shape)
    write_synthetic(generate(spec), spec, landing)
    return END_DATE - timedelta(days=sizes["days"])


def seeded_config(assets, selected: set, seed: int) -> dict:
    """Run config that sets ``seed`` on every selected op whose config has one (candidates, training,
    sampling, seeded baselines)."""
    ops = {}
    for asset in (a for a in assets if set(a.keys) & selected):
        schema = getattr(asset, "op", None) and asset.op.config_schema
        fields = getattr(getattr(schema, "config_type", None), "fields", {}) if schema else {}
        if "seed" in fields:
            ops[asset.op.name] = {"config": {"seed": seed}}
    return {"ops": ops}


def selected_checks(defs, selected: set):
    return [key for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key in selected]


def step_seconds(instance, run_id: str) -> dict[str, float]:
    return {s.step_key: round(s.end_time - s.start_time, 1) for s in instance.get_run_step_stats(run_id) if s.end_time and s.start_time}


def run_worker(dataset: str, seed: int, sizes: dict, workdir: Path) -> dict:
    landing, home = workdir / "landing", workdir / "home"
    started = time.perf_counter()
    first_day = write_landing(dataset, landing, sizes, seed)
    # Before the code location is imported: it resolves its partitions and paths from these.
    os.environ.update({"RECSYS_HOME": str(home), "RECSYS_LANDING_DIR": str(landing), "RECSYS_FIRST_DAY": first_day.isoformat()})
    import dagster as dg
    import duckdb

    from recsys_assets.definitions import defs
    from recsys_assets.runner import day_range_tags
    from resources.generation import GenerationSettings, repeat_share_sql
    from resources.splits import EvaluationSplit

    metrics_key = dg.AssetKey(["evaluation", "recommendation_metrics"])
    selection = dg.AssetSelection.assets(metrics_key).upstream()
    assets = [*defs.assets, *(defs.asset_checks or [])]
    instance = dg.DagsterInstance.ephemeral()
    days = defs.resources["landing"].landing_days()
    selected = selection.resolve(defs.resolve_asset_graph())
    # Each worker's log file keeps Dagster's full event log at INFO.
    run_config = {**seeded_config(defs.assets, selected, seed), "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    # The sampling seed lives on the generation resource the product and the evaluation share.
    resources = {**defs.resources, "generation": GenerationSettings(seed=seed)}
    result = dg.materialize(
        assets, selection=selection, instance=instance, resources=resources, run_config=run_config, tags=day_range_tags(days)
    )
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        scores = conn.execute("SELECT model, metric, k, value FROM marts.recommendation_metrics").df()
        lists = conn.execute(
            "SELECT recommender AS model, count(*) / count(DISTINCT user_id) AS items_per_user FROM evaluation.recommendations GROUP BY 1"
        ).df()
        # How repeat-heavy the data set is: the test period's purchases that repeat an earlier one of the user.
        day_after = conn.execute("SELECT max(ts)::DATE + 1 FROM staging.fct_purchases").fetchall()[0][0]
        repeat_share = round(float(conn.execute(repeat_share_sql(EvaluationSplit().test_days), [day_after]).fetchall()[0][0]), 3)
    llm = result.asset_materializations_for_node("evaluation__llm_test_recommendations")[0].metadata
    return {
        "dataset": dataset,
        "seed": seed,
        "sizes": sizes,
        "scores": scores.to_dict("records"),
        "items_per_user": dict(zip(lists["model"], lists["items_per_user"].astype(float))),
        "llm_valid_id_rate": float(llm["valid_id_rate"].value) if "valid_id_rate" in llm else None,
        "repeat_share": repeat_share,
        "step_seconds": step_seconds(instance, result.run_id),
        "check_steps": [f"{check.asset_key.to_python_identifier()}_{check.name}" for check in selected_checks(defs, selected)],
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
        "measured_on": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


# --- parent: every data set and seed, then the tables (quality_report.py) ------------------


def run_all(datasets: list[str], seeds: list[int], sizes: dict, log, save) -> list[dict]:
    """Seed by seed over every data set, so that a run stopped early still has each data set at the
    same seeds; ``save(results)`` after every run, so that it loses nothing that finished."""
    results = []
    for seed in seeds:
        for dataset in datasets:
            with tempfile.TemporaryDirectory(prefix=f"quality-{dataset}-{seed}-") as workdir:
                out = Path(workdir) / "result.json"
                command = [sys.executable, __file__, "--worker", dataset, "--seed", str(seed), "--sizes", json.dumps(sizes), "--json", str(out)]
                log(f"[{time.strftime('%H:%M:%S')}] {dataset}, seed {seed}: running the graph ({sizes['users']} users) ...")
                done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"{dataset} seed {seed} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
                results.append(json.loads(out.read_text()))
                save(results)
                log(f"[{time.strftime('%H:%M:%S')}] {dataset}, seed {seed}: done in {results[-1]['total_seconds']:.0f} s")
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Run it alone on the machine: it reports seconds.")
    parser.add_argument("--quick", action="store_true", help=f"small data sets and 2 seeds ({QUICK['users']} users, {QUICK['days']} days)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2; --quick: 0,1)")
    parser.add_argument("--users", type=int, help="users per data set (the public one is sampled down to it)")
    parser.add_argument("--items", type=int, help="items of the synthetic data sets")
    parser.add_argument("--days", type=int, help="days of the synthetic data sets")
    parser.add_argument("--from-json", nargs="+", type=Path, help="print (and --update-readme) the tables of saved results instead of running")
    parser.add_argument("--update-readme", action="store_true", help="replace the README's quality section with the tables")
    parser.add_argument("--worker", metavar="DATASET", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        with tempfile.TemporaryDirectory(prefix="quality-worker-") as workdir:
            args.json.write_text(json.dumps(run_worker(args.worker, args.seed, json.loads(args.sizes), Path(workdir))))
        return
    if args.from_json:
        results = [result for path in args.from_json for result in json.loads(path.read_text())]
        saved = " ".join(str(path) for path in args.from_json)
        finish(report(results, f"python benchmarks/quality.py --from-json {saved}"), args.update_readme)
        return
    preset = QUICK if args.quick else FULL
    sizes = {name: getattr(args, name, None) or preset[name] for name in ("users", "items", "days", "months")}
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else preset["seeds"]
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise SystemExit(f"Unknown data set(s) {unknown}: choose from {DATASETS}.")
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / f"quality-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M')}.json"
    print(f"Results go to {saved} after every run (render a stopped run with --from-json).", flush=True)
    results = run_all(datasets, seeds, sizes, log=lambda line: print(line, flush=True), save=lambda r: save_results(r, saved))
    finish(report(results, "python benchmarks/quality.py " + " ".join(sys.argv[1:])), args.update_readme)


def save_results(results: list[dict], path: Path) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(results, indent=1))
    partial.replace(path)  # a reader sees the previous complete file or the new one


def finish(text: str, readme: bool) -> None:
    print(text)
    if readme:
        update_readme(text)


if __name__ == "__main__":
    main()

"""The whole graph at growing scale: wall seconds, CPU seconds, peak memory and rows per layer.

    .venv/bin/python benchmarks/pipeline.py --users 10000,100000
    .venv/bin/python benchmarks/pipeline.py --users 1000000 --train-steps 20

For every scale a fresh process generates a synthetic marketplace (items scaled with users)
into a scratch landing folder and materializes the real code location's assets on a fresh
RECSYS_HOME, layer after layer, with the default settings: ingest, dbt features, candidates,
id tokenizer, prompt dataset, the candidate pool's item models, training, engine build, and
generation for one user-range shard of --sample-users users. Two layers are cut short, and
their full cost is extrapolated (and labelled so):

- training stops after --train-steps optimizer steps; the full run's steps follow from the
  training examples (the prompt dataset samples at most ``train_users`` users), batch size and
  epochs, at the measured seconds per step;
- generation runs for one shard; all users' time is the user count over the measured users/s.

Generation needs a served model: the benchmark promotes the engine it built by hand (the
promotion gate needs the evaluation layer, which this benchmark leaves out). CPU seconds
include the children (dbt, the GPU jobs); peak memory is the largest resident set of the
process and its children while the layer ran. Run it alone on the machine: the load average
before and after is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from measure import emit, load_average, marketplace_spec, run_scale, scale_parser, timed  # noqa: E402  (benchmarks/ beside this script)

LAYERS = (
    "ingest", "dbt features", "candidates", "id tokenizer", "prompt dataset", "pool item models", "training", "engine build", "generation",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = scale_parser(__doc__, "10000,100000", 90)
    parser.add_argument("--train-steps", type=int, default=50, help="optimizer steps actually run (default: %(default)s)")
    parser.add_argument("--sample-users", type=int, default=256, help="users of the generation shard (default: %(default)s)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- one scale (worker process)


def measure_scale(users: int, args: argparse.Namespace) -> None:
    from synthetic_marketplace.generator import generate
    from synthetic_marketplace.landing import write_landing

    spec = marketplace_spec(users, args)
    scratch = Path(tempfile.mkdtemp(prefix=f"pipeline-{users}-"))
    landing, home = scratch / "landing", scratch / "home"
    counts, seconds, cpu, peak = timed(lambda: write_landing(generate(spec), spec, landing))
    emit(users=users, layer="generate marketplace (setup)", seconds=seconds, cpu=cpu, peak_mb=peak, rows=counts["purchases"], unit="purchases")
    # Before the code location is imported: it resolves its paths, partitions and shard size from these.
    os.environ.update({"RECSYS_HOME": str(home), "RECSYS_LANDING_DIR": str(landing), "RECSYS_FIRST_DAY": spec.start_date.isoformat(),
                       "RECSYS_USERS_PER_SHARD": str(args.sample_users)})  # fmt: skip
    Graph(users, args).run_every_layer()


class Graph:
    """The code location's assets on one ephemeral instance, materialized a layer at a time."""

    def __init__(self, users: int, args: argparse.Namespace):
        import dagster as dg

        from recsys_assets.definitions import defs

        self.dg, self.defs, self.users, self.args = dg, defs, users, args
        self.instance = dg.DagsterInstance.ephemeral()
        self.assets = [*defs.assets, *(defs.asset_checks or [])]

    def materialize(self, selection, run_config: dict | None = None, **kwargs):
        # Warnings and errors only: the step logs of a 100k-user run would bury the table.
        run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        result = self.dg.materialize(self.assets, selection=selection, instance=self.instance, resources=self.defs.resources,
                                     run_config=run_config, **kwargs)  # fmt: skip
        assert result.success, f"{selection} failed"
        return result

    def metadata(self, key) -> dict:
        from resources.artifacts import latest_metadata

        return latest_metadata(self.instance, key)

    def count(self, *tables: str) -> int:
        with self.defs.resources["warehouse"].get_connection() as conn:
            return sum(conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in tables)

    def run_every_layer(self) -> None:
        from recsys_assets import keys
        from recsys_assets.runner import day_range_tags

        dg = self.dg
        days = day_range_tags(self.defs.resources["landing"].landing_days())
        steps = {
            "ingest": (lambda: self.materialize(dg.AssetSelection.groups("ingest"), tags=days),
                       lambda: (self.count("raw.purchases", "raw.wishlist", "raw.cart"), "events")),
            "dbt features": (lambda: self.materialize(dg.AssetSelection.groups("features"), tags=days),
                             lambda: (self.count("staging.fct_purchases"), "fct_purchases rows")),
            "candidates": (lambda: self.materialize(dg.AssetSelection.groups("candidates")),
                           lambda: (self.count(*(f"candidates.{t}" for t in CANDIDATE_TABLES)), "candidate rows")),
            "id tokenizer": (lambda: self.materialize(dg.AssetSelection.assets(keys.ID_TOKENIZER)),
                             lambda: (self.metadata(keys.ID_TOKENIZER)["vocab_size"], "vocabulary")),
            "prompt dataset": (lambda: self.materialize(dg.AssetSelection.assets(keys.PROMPT_DATASET)),
                               lambda: (self.metadata(keys.PROMPT_DATASET)["dagster/row_count"], "examples")),
            "pool item models": (lambda: self.materialize(dg.AssetSelection.assets(keys.POOL_ITEM_MODELS)),
                                 lambda: (self.metadata(keys.POOL_ITEM_MODELS)["neighbour_pairs"], "neighbour pairs")),
            "training": (self.train, lambda: (self.metadata(keys.FINE_TUNED_MODEL)["steps"], "steps run")),
            "engine build": (lambda: self.materialize(dg.AssetSelection.assets(keys.INFERENCE_ENGINE)),
                             lambda: (self.metadata(keys.INFERENCE_ENGINE)["size_mb"], "MB engine")),
            "generation": (self.generate_one_shard, lambda: (self.metadata(keys.USER_RECOMMENDATIONS)["users"], "users")),
        }  # fmt: skip
        for layer in LAYERS:
            action, rows = steps[layer]
            _, seconds, cpu, peak = timed(action)
            count, unit = rows()
            emit(users=self.users, layer=layer, seconds=seconds, cpu=cpu, peak_mb=peak, rows=count, unit=unit, **self.extrapolation(layer, seconds))

    def train(self):
        from recsys_assets import keys

        config = {"ops": {"model__fine_tuned_model": {"config": {"max_steps": self.args.train_steps}}}}
        return self.materialize(self.dg.AssetSelection.assets(keys.FINE_TUNED_MODEL), run_config=config)

    def generate_one_shard(self):
        """The first user-range shard, served by the engine just built (promoted by hand: see the module docstring)."""
        from recsys_assets import keys
        from recsys_assets.runner import register_shards

        engine = self.metadata(keys.INFERENCE_ENGINE)
        promoted = {"model_version": engine["model_version"], "path": engine["path"], "decision": "promoted by benchmarks/pipeline.py"}
        self.instance.report_runless_asset_event(self.dg.AssetMaterialization(keys.MODEL_PROMOTION, metadata=promoted))
        shard = register_shards(self.instance, self.defs.resources["warehouse"])[0]
        return self.materialize(self.dg.AssetSelection.assets(keys.SHARD_USERS, keys.USER_RECOMMENDATIONS), partition_key=shard)

    def extrapolation(self, layer: str, seconds: float) -> dict:
        """The full run's seconds for the layers the benchmark cuts short, and how they were derived."""
        from gpu_jobs.train_config import TrainingConfig
        from gpu_jobs.training_loop import training_steps
        from recsys_assets import keys

        if layer == "training":
            model = self.metadata(keys.FINE_TUNED_MODEL)
            _, planned = training_steps(model["train_examples"], TrainingConfig())  # the defaults, without the benchmark's step cap
            per_step = model["train_seconds"] / max(model["steps"], 1)
            return {"full_seconds": planned * per_step, "full_basis": f"{planned:,} steps x {per_step:.2f} s/step"}
        if layer == "generation":
            served = self.metadata(keys.USER_RECOMMENDATIONS)
            rate = served["users"] / seconds
            return {"full_seconds": self.users / rate, "full_basis": f"{self.users:,} users at {rate:.1f} users/s",
                    "users_per_second": rate}  # fmt: skip
        return {}


CANDIDATE_TABLES = ("item_vectors", "user_vectors", "interest_clusters", "user_interest_clusters", "user_cluster_candidates",
                    "similar_items", "similar_users")  # fmt: skip


# ---------------------------------------------------------------- all scales (parent process)


def print_row(row: dict) -> None:
    full = f"  full run: {row['full_seconds']:,.0f} s ({row['full_basis']}; extrapolated)" if "full_seconds" in row else ""
    print(f"{row['users']:>9,} {row['layer']:<30} {row['seconds']:>9.1f} {row['cpu']:>9.1f} {row['peak_mb']:>9,.0f} "
          f"{row['rows']:>12,} {row['unit']}{full}", flush=True)  # fmt: skip


def markdown(rows: list[dict], scales: list[int]) -> str:
    """Seconds / peak GB per layer, the scales side by side, for the README."""
    by_key = {(r["users"], r["layer"]): r for r in rows}
    lines = ["| layer | " + " | ".join(f"{s:,} users: wall s / CPU s / peak GB" for s in scales) + " |", "|---" * (len(scales) + 1) + "|"]
    for layer in ("generate marketplace (setup)", *LAYERS):
        cells = []
        for scale in scales:
            row = by_key.get((scale, layer))
            cell = f"{row['seconds']:,.0f} / {row['cpu']:,.0f} / {row['peak_mb'] / 1024:.1f}" if row else "-"
            if row and "full_seconds" in row:
                cell += f" (full: {row['full_seconds']:,.0f} s, extrapolated)"
            cells.append(cell)
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    totals = []
    for scale in scales:
        layer_rows = [r for r in rows if r["users"] == scale and r["layer"] in LAYERS]
        measured = sum(r["seconds"] for r in layer_rows)
        full = sum(r.get("full_seconds", r["seconds"]) for r in layer_rows if r["layer"] != "generation")
        totals.append(f"{measured:,.0f} measured; every layer but generation in full: {full:,.0f}")
    lines.append("| total | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.scale:
        measure_scale(args.scale, args)
        return
    scales = [int(u) for u in args.users.split(",")]
    forwarded = [f"--items-per-user={args.items_per_user}", f"--days={args.days}", f"--train-steps={args.train_steps}",
                 f"--sample-users={args.sample_users}", f"--seed={args.seed}"]  # fmt: skip
    print(f"Pipeline benchmark on {os.cpu_count()} cores; load average before: {load_average()}")
    print(f"{'users':>9} {'layer':<30} {'wall s':>9} {'cpu s':>9} {'peak MB':>9} {'rows':>12}")
    rows = [row for users in scales for row in run_scale(__file__, forwarded, users, print_row)]
    print(f"\nload average after: {load_average()}\n\n{markdown(rows, scales)}")


if __name__ == "__main__":
    main()

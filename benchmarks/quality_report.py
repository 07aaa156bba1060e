"""The quality benchmark's report: per data set, the models' scores over the seeds and where the LLM
stands, then the seconds per stage; and the README section it replaces (benchmarks/quality.py)."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- quality-benchmark:start -->", "<!-- quality-benchmark:end -->"
# (metric, k) columns of the tables, in order; top_bias: lower is better.
COLUMNS = [("hit_rate", 10), ("ndcg", 10), ("recall", 10), ("hit_rate", 200), ("ndcg", 200), ("recall", 200), ("top_bias", 10)]
LLM = "llm"


def score_table(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Models x (metric@k, items per user, valid-id rate): 'mean ± std' over the seeds."""
    frames = []
    for result in results:
        scores = pd.DataFrame(result["scores"])
        wide = scores.pivot_table(index="model", columns=["metric", "k"], values="value", aggfunc="first")
        row = pd.DataFrame({f"{m}@{k}": wide[(m, k)] for m, k in COLUMNS if (m, k) in wide.columns})
        row["items/user"] = pd.Series(result["items_per_user"])
        # Baselines rank catalog items only; the LLM's rate is of the ids it generated, before any were dropped.
        row["valid ids"] = 1.0
        if result["llm_valid_id_rate"] is not None and LLM in row.index:
            row.loc[LLM, "valid ids"] = result["llm_valid_id_rate"]
        frames.append(row.assign(seed=result["seed"]))
    table = pd.concat(frames)
    mean, std = table.groupby(level=0).mean().drop(columns="seed"), table.groupby(level=0).std().drop(columns="seed")
    return mean, std


def format_table(mean: pd.DataFrame, std: pd.DataFrame) -> str:
    order = mean.sort_values("hit_rate@10", ascending=False).index
    cells = mean.loc[order].copy().astype(object)
    for column in mean.columns:
        digits = 1 if column == "items/user" else 3
        for model in order:
            spread = std.loc[model, column]
            cells.loc[model, column] = f"{mean.loc[model, column]:.{digits}f}" + ("" if pd.isna(spread) else f" ± {spread:.{digits}f}")
    cells.index = [f"**{m}**" if m == LLM else m for m in cells.index]
    return cells.rename_axis("model").to_markdown()


def verdict(mean: pd.DataFrame) -> str:
    """Where the LLM stands against the best baseline on each headline metric, in words."""
    from recsys_assets.evaluation.metrics import standing

    return "; ".join(standing(mean[column], LLM, column) for column in ["hit_rate@10", "ndcg@10", "hit_rate@200"]) + "."


# Steps by the stage a person thinks in; asset checks (steps of their own) count with nothing.
STAGES = {
    "raw__": "ingest", "dbt_": "features (dbt)", "candidates__": "candidates", "llm_data__": "tokenizer + prompts",
    "model__fine_tuned_model": "training", "model__inference_engine": "engine build",
    "evaluation__llm_test_recommendations": "LLM generation (test users)", "evaluation__baseline_": "baseline ",
    "evaluation__recommendation_metrics": "metrics",
}  # fmt: skip


def stage_of(step_key: str, checks: set[str]) -> str | None:
    if step_key in checks:
        return None
    for prefix, stage in STAGES.items():
        if step_key.startswith(prefix):
            return stage + step_key.removeprefix(prefix) if stage.endswith(" ") else stage
    return step_key


def stage_table(results: list[dict]) -> str:
    """Seconds per stage (rows) and data set (columns), mean over the seeds."""
    rows = []
    for result in results:
        for step, seconds in result["step_seconds"].items():
            stage = stage_of(step, set(result.get("check_steps", [])))
            if stage:
                rows.append({"dataset": result["dataset"], "seed": result["seed"], "stage": stage, "seconds": seconds})
    frame = pd.DataFrame(rows).groupby(["dataset", "seed", "stage"])["seconds"].sum().groupby(["stage", "dataset"]).mean()
    table = frame.unstack("dataset").round(1)
    return table.loc[table.sum(axis=1).sort_values(ascending=False).index].to_markdown()


def report(results: list[dict], command: str) -> str:
    loads = [r["load_average"][0] for r in results if "load_average" in r]
    load = f"1-minute load average {min(loads):.1f}-{max(loads):.1f} at the end of the runs" if loads else "load average not recorded"
    day = results[0].get("measured_on", f"{datetime.now(timezone.utc):%Y-%m-%d}")
    lines = [
        f"Measured {day} with `{command}` on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), {load}. "
        "Mean ± standard deviation over the seeds; items/user is the list length scored; valid ids is the share of "
        "generated ids that are catalog ids, before any were dropped (baselines rank catalog items only).",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        runs = [r for r in results if r["dataset"] == dataset]
        sizes, mean_std = runs[0]["sizes"], score_table(runs)
        repeat = sum(r["repeat_share"] for r in runs) / len(runs)
        lines += [
            f"#### {dataset}: {sizes['users']} users requested, seeds {', '.join(str(r['seed']) for r in runs)}, "
            f"repeat share of test purchases {repeat:.2f}, {sum(r['total_seconds'] for r in runs) / len(runs):.0f} s per run",
            "",
            format_table(*mean_std),
            "",
            verdict(mean_std[0]),
            "",
        ]
    lines += ["Seconds per stage (mean over the seeds; the graph's steps, without asset checks):", "", stage_table(results), ""]
    return "\n".join(lines)


def update_readme(text: str) -> None:
    readme = README.read_text()
    if README_START not in readme or README_END not in readme:
        raise SystemExit(f"README.md has no {README_START} ... {README_END} section to replace.")
    head, rest = readme.split(README_START, 1)
    README.write_text(head + README_START + "\n" + text + "\n" + README_END + rest.split(README_END, 1)[1])

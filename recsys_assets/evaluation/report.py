"""How recommendation_metrics presents the scores: tables per K, the focus model's relative
deltas, the comparison plot and the LLM's standing against the best baseline, in words."""

import io

import pandas as pd

from recsys_assets.evaluation.metrics import LOWER_IS_BETTER, METRICS, relative_deltas, standing
from recsys_assets.evaluation.tables import LLM

# The metrics the comparison table and plot lead with.
HEADLINE = ["hit_rate", "precision", "recall", "map", "ndcg", "revenue", "top_bias"]


def metrics_frame(metrics: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per metric, one column per model, at ``k``."""
    table = metrics[metrics["k"] == k].pivot_table(index="metric", columns="model", values="value", aggfunc="first")
    table = table.reindex([m for m in METRICS if m in table.index])
    table.index = [f"{m} (lower is better)" if m in LOWER_IS_BETTER else m for m in table.index]
    return table.rename_axis(columns=None)


def deltas_frame(metrics: pd.DataFrame, model: str, ks: list[int]) -> pd.DataFrame:
    """``model`` vs each other model, relative, one block of rows per K (as in the reference's report)."""
    blocks = []
    for k in ks:
        deltas = relative_deltas(metrics, model, k).reindex(HEADLINE).dropna(how="all")
        deltas.index = [f"{metric}@{k}" + (" (lower is better)" if metric in LOWER_IS_BETTER else "") for metric in deltas.index]
        blocks.append(deltas)
    table = pd.concat(blocks)
    return table.map(lambda delta: "n/a" if pd.isna(delta) else f"{delta:+.1%}").rename_axis(columns=None)


def _grouped_bars(axis, table: pd.DataFrame, title: str, colours: dict[str, str]) -> None:
    """Bars per row of ``table`` (metrics), one colour per column (models)."""
    width = 0.8 / max(table.shape[1], 1)
    for i, column in enumerate(table.columns):
        axis.bar([x + i * width for x in range(len(table))], table[column].fillna(0.0), width, label=column, color=colours[column])
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(table))], table.index, rotation=30, ha="right")
    axis.set_title(title)


def comparison_plot(metrics: pd.DataFrame, ks: list[int], focus: str) -> bytes:
    """PNG: a panel per K with the headline metrics per model, and a last panel with the
    focus model's relative deltas against each other model at the smallest K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted(metrics["model"].unique(), key=lambda m: (m != focus, m))
    colours = {model: f"C{i}" for i, model in enumerate(models)}  # one colour per model in every panel
    shown = [m for m in HEADLINE if m != "revenue"]  # revenue is money, off the 0-1 scale
    # Two panels a row, about 800 px wide: the asset page shows it without scrolling.
    rows = (len(ks) + 2) // 2
    figure, grid = plt.subplots(rows, 2, figsize=(9, 3.4 * rows), squeeze=False)
    axes = [list(grid.flat)]
    for unused in axes[0][len(ks) + 1 :]:
        unused.set_visible(False)
    axes[0] = axes[0][: len(ks) + 1]
    for axis, k in zip(axes[0], ks):
        table = metrics[metrics["k"] == k].pivot_table(index="metric", columns="model", values="value", aggfunc="first")
        _grouped_bars(axis, table.reindex(index=shown, columns=models), f"@{k}", colours)
        axis.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    deltas = relative_deltas(metrics, focus, min(ks)).reindex(HEADLINE) * 100
    _grouped_bars(axes[0][-1], deltas, f"{focus} vs others @{min(ks)}: relative delta, %", colours)
    axes[0][-1].axhline(0, color="black", linewidth=0.8)
    if deltas.shape[1]:
        axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def llm_standings(metrics: pd.DataFrame, ks: list[int]) -> list[str]:
    """The LLM against the best baseline on HitRate and NDCG at the smallest K and HitRate at the largest."""
    headline = [("hit_rate", min(ks)), ("ndcg", min(ks)), ("hit_rate", max(ks))]
    return [
        standing(metrics[(metrics["metric"] == metric) & (metrics["k"] == k)].set_index("model")["value"], LLM, f"{metric}@{k}")
        for metric, k in headline
    ]

"""Evaluation layer: classic baselines and the offline metrics of every recommender.

Every recommender (the baselines here, the LLM from the serving layer) writes its top lists
for the test period into ``evaluation.recommendations``; ``evaluation/recommendation_metrics``
scores all of them against the held-out purchases (what each user bought in the test period,
the prompt dataset's definition) and writes ``marts.recommendation_metrics``.

What a baseline may see (see splits.py): it is fitted on purchases before the training
cut-off (``val_start``), and ranks for a user from the user's purchases before the test
period, the same history the LLM's test prompt holds. Nothing on or after ``test_start`` is
read: the SQL cuts it off before any data reaches Python.
"""

import base64
import io
import time
from collections.abc import Callable
from typing import NamedTuple
from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import baselines, baselines_ials, baselines_repeat, baselines_sasrec
from recsys_assets.evaluation.metrics import LOWER_IS_BETTER, METRICS, TrainingStats, evaluate, relative_deltas, standing, training_stats
from recsys_assets.evaluation.tables import METRICS as METRICS_TABLE
from recsys_assets.evaluation.checks import BASELINE_LISTS, BEATS_POPULARITY, baseline_lists_check, beats_popularity
from recsys_assets.evaluation.tables import LLM, LLM_CHAINS, RECOMMENDATIONS, append_results, read_recommendations, write_recommendations
from recsys_assets.llm_data.history import items_bought_between
from recsys_assets.metadata import duration, frame_table
from resources.artifacts import ArtifactStore
from resources.splits import EvaluationSplit, SplitDates
from resources.warehouse import WAREHOUSE_POOL, Warehouse

GROUP = "evaluation"
OWNERS = ["team:ml"]
LLM_RECOMMENDATIONS = dg.AssetKey(["evaluation", "llm_test_recommendations"])
SOURCE_DEPS = [dg.AssetKey(["staging", "fct_purchases"]), dg.AssetKey(["staging", "stg_items"]), dg.AssetKey(["staging", "stg_users"])]
# The metrics the comparison table and plot lead with.
HEADLINE = ["hit_rate", "precision", "recall", "map", "ndcg", "revenue", "top_bias"]


class BaselineConfig(dg.Config):
    list_size: int = 200
    """Items per user (the reference evaluates top-200)."""


class RecentPopularityConfig(BaselineConfig):
    days: int = 28
    """Popularity window before the training cut-off (28 was best of 7/14/28 on the val split)."""


class PersonalBaselineConfig(BaselineConfig):
    half_life_days: float = 30.0
    """Age at which a past purchase counts half in the user's profile (30 was best of 14/30/90 on val)."""


class ItemToItemConfig(PersonalBaselineConfig):
    neighbours: int = 100
    """Most similar items kept per item."""


class EaseConfig(PersonalBaselineConfig):
    l2: float = 200.0
    """Ridge strength (200-500 were best of 10/50/200/500 on val at 3k users; grows with the data)."""
    max_items: int = 8_000
    """Most popular training items modelled: the fit inverts a max_items^2 matrix (8,000 items: 0.5 GB and
    about half a minute on 2 cores; 20,000 took over 10 minutes and 10 GB on a 400-user grocery sample)."""


class OwnFrequencyConfig(BaselineConfig):
    half_life_days: float | None = None
    """Age at which a past purchase counts half; None counts every purchase fully (best of None/14/30/60/120 on val at 3k users)."""


class TifuKnnConfig(BaselineConfig):
    """Defaults: the paper's (Hu et al. 2020) setting for Ta-Feng grocery baskets."""

    neighbours: int = 300
    """k nearest training users (cosine on TIFU vectors)."""
    group_size: int = 7
    """m: consecutive baskets (days with purchases) per group."""
    within_decay: float = 0.9
    """r_b: decay per basket inside a group, newest basket 1."""
    group_decay: float = 0.7
    """r_g: decay per group, newest group 1."""
    alpha: float = 0.7
    """Weight of the user's own vector; 1 - alpha goes to the neighbours' mean."""


class SasrecConfig(BaselineConfig):
    """CPU-sized: about a minute on 2 cores at 3,000 users."""

    factors: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 50
    """Newest items of a sequence the model reads."""
    dropout: float = 0.2
    epochs: int = 20
    """20 epochs at batch 32 / lr 5e-3: HitRate@10 0.557 on val at 3k users; 10 at batch 128 / lr 1e-3 gave 0.287."""
    batch_size: int = 32
    learning_rate: float = 5e-3
    seed: int = 0
    threads: int = 1
    """torch threads: it trains beside other steps, and on 2 busy cores 2 threads ran 4-5x slower per step than 1."""

    def settings(self) -> baselines_sasrec.SasrecSettings:
        return baselines_sasrec.SasrecSettings(**self.model_dump(exclude={"list_size"}))


class IalsConfig(BaselineConfig):
    factors: int = 16
    """Best of 16/24/32/64/128 on val at 3k users (the synthetic marketplace has 12 personas; grows with the data)."""
    regularization: float = 0.01
    alpha: float = 10.0
    """Confidence per (recency-weighted) purchase."""
    iterations: int = 15
    half_life_days: float = 30.0
    """Age at which a purchase's confidence halves."""
    seed: int = 0

    def settings(self) -> baselines_ials.IalsSettings:
        return baselines_ials.IalsSettings(**self.model_dump(exclude={"list_size"}))


def load_baseline_inputs(conn, dates: SplitDates) -> baselines.BaselineInputs:
    history_end = dates.prompt_cutoff("test")
    # Ordered, so that the same events give bit-identical scores (float sums in a fixed order).
    purchases = conn.execute(
        "SELECT user_id, item_id, ts FROM staging.fct_purchases WHERE ts < ? ORDER BY user_id, ts, item_id", [history_end]
    ).df()
    users = conn.execute("SELECT user_id FROM staging.stg_users").df()["user_id"]
    return baselines.baseline_inputs(purchases, users, dates.train_cutoff, history_end)


def _baseline_metadata(inputs: baselines.BaselineInputs, recommendations: pd.DataFrame, seconds: float) -> dict:
    first_user = recommendations[recommendations["user_id"] == recommendations["user_id"].min()].head(10)
    return {
        "dagster/row_count": len(recommendations),
        "users": int(recommendations["user_id"].nunique()),
        "distinct_items": int(recommendations["item_id"].nunique()),
        "training_purchases": len(inputs.training),
        "training_cutoff": str(inputs.training_end.date()),
        "history_until": str(inputs.history_end.date()),
        # What the leakage rules promise, visible per run: fitted before val_start, histories before test_start.
        "last_event_fitted": str(inputs.training["ts"].max()),
        "last_event_seen": str(inputs.histories["ts"].max()),
        "duration": duration(seconds),
        "preview": frame_table(first_user),
    }


Recommend = Callable[[baselines.BaselineInputs, dg.Config], pd.DataFrame]


def baseline_asset(name: str, config_type: type[BaselineConfig], recommend: Recommend, description: str) -> dg.AssetsDefinition:
    """A baseline asset: load what baselines may see, recommend, replace its rows."""

    @dg.asset(
        key=["evaluation", f"baseline_{name}"],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb", "python"},
        deps=SOURCE_DEPS,
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                BASELINE_LISTS, asset=["evaluation", f"baseline_{name}"], description="A non-empty top list for every user."
            )
        ],
        description=f"{description} Top lists for every user, fitted before the training cut-off, in {RECOMMENDATIONS} "
        f"(recommender = {name!r}).",
    )
    def _baseline(config: config_type, warehouse: Warehouse, splits: EvaluationSplit) -> dg.MaterializeResult:
        started = time.perf_counter()
        with warehouse.get_connection() as conn:
            inputs = load_baseline_inputs(conn, splits.dates(conn))
            recommendations = recommend(inputs, config)
            write_recommendations(conn, name, recommendations)
        return dg.MaterializeResult(
            metadata=_baseline_metadata(inputs, recommendations, time.perf_counter() - started),
            check_results=[baseline_lists_check(recommendations, pd.Series(inputs.users))],
        )

    return _baseline


class BaselineRecipe(NamedTuple):
    config_type: type[BaselineConfig]
    recommend: Recommend
    description: str


# One place per baseline: the Dagster asset and the plain-Python registry below both come from it.
BASELINE_RECIPES: dict[str, BaselineRecipe] = {
    "global_popularity": BaselineRecipe(
        BaselineConfig,
        lambda inputs, config: baselines.global_popularity(inputs, config.list_size),
        "The items most users bought before the cut-off, the same list for everyone.",
    ),
    "recent_popularity": BaselineRecipe(
        RecentPopularityConfig,
        lambda inputs, config: baselines.recent_popularity(inputs, config.list_size, config.days),
        "The items most users bought in the last weeks before the cut-off, the same list for everyone.",
    ),
    "item_to_item": BaselineRecipe(
        ItemToItemConfig,
        lambda inputs, config: baselines.item_to_item(inputs, config.list_size, config.neighbours, config.half_life_days),
        "Items co-purchased with the user's recent purchases (cosine item-item neighbourhoods).",
    ),
    "ease": BaselineRecipe(
        EaseConfig,
        lambda inputs, config: baselines.ease(inputs, config.list_size, config.l2, config.max_items, config.half_life_days),
        "EASE (Steck 2019), a linear item-item autoencoder in closed form: a strong matrix-factorisation-class baseline.",
    ),
    "own_frequency": BaselineRecipe(
        OwnFrequencyConfig,
        lambda inputs, config: baselines_repeat.own_frequency(inputs, config.list_size, config.half_life_days),
        "What the user bought most often (recency-weighted), then the popular items: the strong simple baseline "
        "where repeat purchases dominate.",
    ),
    "tifu_knn": BaselineRecipe(
        TifuKnnConfig,
        lambda inputs, config: baselines_repeat.tifu_knn(
            inputs, config.list_size, config.neighbours, config.group_size, config.within_decay, config.group_decay, config.alpha
        ),
        "TIFU-KNN (Hu et al. 2020), next-basket recommendation: the user's time-decayed basket vector blended with "
        "its nearest users' vectors.",
    ),
    "sasrec": BaselineRecipe(
        SasrecConfig,
        lambda inputs, config: baselines_sasrec.sasrec(inputs, config.list_size, config.settings()),
        "SASRec (Kang & McAuley 2018), a self-attentive sequential model of the next purchase, trained on the "
        "training sequences.",
    ),
    "ials": BaselineRecipe(
        IalsConfig,
        lambda inputs, config: baselines_ials.ials(inputs, config.list_size, config.settings()),
        "Implicit ALS (Hu et al. 2008; the implicit package) on recency-weighted purchase confidence.",
    ),
}
BASELINES = [baseline_asset(name, *recipe) for name, recipe in BASELINE_RECIPES.items()]


def default_recommender(recipe: BaselineRecipe) -> Callable[[baselines.BaselineInputs, int], pd.DataFrame]:
    return lambda inputs, n: recipe.recommend(inputs, recipe.config_type(list_size=n))


# Every baseline at its asset's default config, callable without Dagster: (inputs, list size) -> top lists.
BASELINE_RECOMMENDERS = {name: default_recommender(recipe) for name, recipe in BASELINE_RECIPES.items()}


class MetricsConfig(dg.Config):
    ks: list[int] = [10, 50, 200]
    """Cut-offs K."""
    top_popular: int = 100
    """N of "the N most popular training items" in top_bias and serendipity."""
    focus_model: str = LLM
    """The model compared with every other one; until it has recommendations, the best by NDCG at the smallest K."""


def held_out_purchases(purchases: pd.DataFrame, dates: SplitDates) -> pd.DataFrame:
    """``user_id, item_id, price``: each user's distinct test-period items (the prompt dataset's
    ``items_bought_between``) with the mean price the user paid for them."""
    start, end = dates.period("test")
    bought = items_bought_between(purchases, start, end)
    pairs = pd.DataFrame([(user, item) for user, items in bought.items() for item in items], columns=["user_id", "item_id"])
    period = purchases[(purchases["ts"] >= pd.Timestamp(start)) & (purchases["ts"] < pd.Timestamp(end))]
    paid = period.groupby(["user_id", "item_id"], as_index=False)["price"].mean()
    return pairs.merge(paid, on=["user_id", "item_id"], how="left")


def load_ground_truth(conn, dates: SplitDates, top_popular: int) -> tuple[pd.DataFrame, TrainingStats]:
    """The held-out purchases and the training-period stats the metrics need."""
    purchases = conn.execute("SELECT user_id, item_id, ts, price FROM staging.fct_purchases").df()
    items = conn.execute("SELECT item_id, category_id FROM staging.stg_items").df()
    training = purchases[purchases["ts"] < pd.Timestamp(dates.train_cutoff)]
    return held_out_purchases(purchases, dates), training_stats(training, items, top_popular)


def score_all(recommendations: pd.DataFrame, held_out: pd.DataFrame, stats, ks: list[int]) -> pd.DataFrame:
    frames = [evaluate(recs, held_out, stats, ks).assign(model=model) for model, recs in recommendations.groupby("recommender")]
    if not frames:
        raise ValueError(f"{RECOMMENDATIONS} is empty: materialize the baselines (and the LLM's test recommendations) first.")
    return pd.concat(frames, ignore_index=True)[["model", "metric", "k", "value"]]


def focus_model(metrics: pd.DataFrame, preferred: str) -> str:
    if preferred in set(metrics["model"]):
        return preferred
    first_k = metrics[(metrics["metric"] == "ndcg") & (metrics["k"] == metrics["k"].min())]
    return str(first_k.sort_values("value", ascending=False)["model"].iloc[0])


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


def _llm_raw_valid_id_rate(instance: dg.DagsterInstance) -> float | None:
    """The LLM's valid-id rate before invalid ids were dropped, as its asset reported it."""
    event = instance.get_latest_materialization_event(LLM_RECOMMENDATIONS)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return metadata["valid_id_rate"].value if "valid_id_rate" in metadata else None


def with_generated_valid_id_rate(metrics: pd.DataFrame, rate: float | None, models: tuple[str, ...]) -> pd.DataFrame:
    """The LLM's ``valid_id_rate`` is the share of the ids it *generated* that are catalog ids: its lists
    are filtered to the catalog before they are written, so their slots are always valid."""
    if rate is None:
        return metrics
    generated = metrics["model"].isin(models) & (metrics["metric"] == "valid_id_rate")
    return metrics.assign(value=metrics["value"].mask(generated, rate))


def llm_standings(metrics: pd.DataFrame, ks: list[int]) -> list[str]:
    """The LLM against the best baseline on HitRate and NDCG at the smallest K and HitRate at the largest."""
    headline = [("hit_rate", min(ks)), ("ndcg", min(ks)), ("hit_rate", max(ks))]
    return [
        standing(metrics[(metrics["metric"] == metric) & (metrics["k"] == k)].set_index("model")["value"], LLM, f"{metric}@{k}")
        for metric, k in headline
    ]


METRICS_KEY = dg.AssetKey(["evaluation", "recommendation_metrics"])
@dg.asset(
    key=METRICS_KEY,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"duckdb", "python"},
    deps=[*(b.key for b in BASELINES), LLM_RECOMMENDATIONS, *SOURCE_DEPS],
    pool=WAREHOUSE_POOL,
    check_specs=[
        dg.AssetCheckSpec(BEATS_POPULARITY, asset=METRICS_KEY, description="The LLM beats global popularity on HitRate and NDCG at the smallest K.")
    ],
    description=(
        f"Scores every recommender in {RECOMMENDATIONS} against the test period's purchases at each K: HitRate, "
        "Precision, Recall, MAP, NDCG, Revenue, Top bias, Recall by category, Novelty, Serendipity, coverage, valid-id "
        f"rate (definitions: recsys_assets/evaluation/metrics.py). Appends to {METRICS_TABLE}; the metadata compares "
        "the LLM with each baseline."
    ),
)
def recommendation_metrics(
    context: dg.AssetExecutionContext, config: MetricsConfig, warehouse: Warehouse, splits: EvaluationSplit, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    started = time.perf_counter()
    evaluated_at = datetime.now(timezone.utc).replace(tzinfo=None)
    with warehouse.get_connection() as conn:
        dates = splits.dates(conn)
        held_out, stats = load_ground_truth(conn, dates, config.top_popular)
        recommendations = read_recommendations(conn)
        raw_valid = _llm_raw_valid_id_rate(context.instance)
        metrics = with_generated_valid_id_rate(score_all(recommendations, held_out, stats, config.ks), raw_valid, (LLM, LLM_CHAINS))
        append_results(conn, METRICS_TABLE, metrics, evaluated_at)

    focus = focus_model(metrics, config.focus_model)
    png = comparison_plot(metrics, config.ks, focus)
    artifacts.path("evaluation", evaluated_at.strftime("%Y%m%dT%H%M%S"), "comparison.png").write_bytes(png)
    headline = metrics[metrics["metric"].isin(["hit_rate", "ndcg"]) & (metrics["k"] == min(config.ks))]
    context.log.info(f"Scored {metrics['model'].nunique()} recommenders on {held_out['user_id'].nunique()} test users")
    standings = llm_standings(metrics, config.ks)
    for line in standings:
        (context.log.warning if " behind " in line else context.log.info)(line)
    return dg.MaterializeResult(
        metadata={
            "evaluated_at": str(evaluated_at),
            "models": dg.MetadataValue.json(sorted(metrics["model"].unique())),
            "test_period": f"{dates.test_start} .. {dates.end}",
            "test_users": int(held_out["user_id"].nunique()),
            "held_out_items_per_user": round(len(held_out) / max(held_out["user_id"].nunique(), 1), 2),
            "dagster/row_count": len(metrics),
            "compared_model": focus,
            # The question a team asks first: is the LLM better than the best recommender it could run instead?
            "llm_vs_best_baseline": dg.MetadataValue.md("\n".join(f"- {line}" for line in standings)),
            **{f"{row.model}/{row.metric}@{row.k}": round(float(row.value), 4) for row in headline.itertuples()},
            **({"llm/generated_valid_id_rate": raw_valid} if raw_valid is not None else {}),
            f"metrics@{min(config.ks)}": frame_table(metrics_frame(metrics, min(config.ks)), index="metric"),
            f"metrics@{max(config.ks)}": frame_table(metrics_frame(metrics, max(config.ks)), index="metric"),
            f"relative_deltas_of_{focus}": frame_table(deltas_frame(metrics, focus, config.ks), index="metric"),
            "comparison_plot": dg.MetadataValue.md(f"![comparison](data:image/png;base64,{base64.b64encode(png).decode()})"),
            "duration": duration(time.perf_counter() - started),
        },
        check_results=[beats_popularity(metrics, min(config.ks))],
    )


evaluation_assets = [*BASELINES, recommendation_metrics]

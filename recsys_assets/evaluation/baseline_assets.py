"""The baseline recommenders as assets: one per recipe, each writing its top lists for the test
period into ``evaluation.recommendations``, fitted on what evaluation/inputs.py lets a baseline see.

The same recipes, called without Dagster (``BASELINE_RECOMMENDERS``), are the sources of the
LLM's candidate pool (recsys_assets/serving/candidate_pool.py).
"""

import time
from collections.abc import Callable
from typing import NamedTuple

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import GROUP, OWNERS, baselines, baselines_ials, baselines_repeat, baselines_sasrec
from recsys_assets.evaluation.checks import BASELINE_LISTS, baseline_lists_check
from recsys_assets.evaluation.inputs import SOURCE_DEPS, load_baseline_inputs
from recsys_assets.evaluation.tables import RECOMMENDATIONS, write_recommendations
from recsys_assets.metadata import duration, frame_table
from resources.splits import EvaluationSplit
from resources.warehouse import WAREHOUSE_POOL, Warehouse


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

"""Champion/challenger gate: a newly trained model serves only when it measures up.

``evaluation/model_promotion`` runs after ``evaluation/recommendation_metrics``. The
challenger is the newest ``model/inference_engine`` (recommender ``llm`` in the metrics); the
references are global popularity and the model serving now, which the evaluation re-scores
on the same test period as recommender ``llm_serving``. The challenger is promoted when, on
every gate metric, it is at least each reference less a relative tolerance; otherwise the
previous model keeps serving, the asset's check fails (the alert sensor turns that into an
alert) and the metadata says which metric fell short and by how much.

``serving/user_recommendations`` generates with the promoted engine, never with an
unchecked one, and records its model version on every row; before the first promotion it
serves the most popular items (model version ``fallback:global_popularity``), so that a
refused first model leaves product teams with full feeds rather than none.
"""

from dataclasses import dataclass

import dagster as dg
import pandas as pd

from recsys_assets.evaluation import GROUP, OWNERS
from recsys_assets.evaluation.tables import METRICS
from recsys_assets.keys import INFERENCE_ENGINE, LLM_TEST_RECOMMENDATIONS, MODEL_PROMOTION, RECOMMENDATION_METRICS
from recsys_assets.metadata import frame_table
from resources.artifacts import latest_materialization, latest_metadata
from resources.warehouse import Warehouse

CHALLENGER = "llm"
SERVING = "llm_serving"
POPULARITY = "global_popularity"
PROMOTED_CHECK = "challenger_promoted"
# What serving records as its model version before any model has passed the gate.
FALLBACK_VERSION = "fallback:global_popularity"


class PromotionConfig(dg.Config):
    metrics: list[str] = ["hit_rate", "ndcg"]
    """Metrics the challenger must hold against every reference."""
    k: int = 10
    """The cut-off the gate compares at."""
    tolerance: float = 0.02
    """Relative slack: the challenger passes at >= (1 - tolerance) x the reference (evaluation noise)."""
    force: bool = False
    """Promote whatever the metrics say (a person's override; the metadata records it)."""


@dataclass(frozen=True)
class Comparison:
    reference: str
    metric: str
    challenger: float
    value: float
    required: float

    @property
    def passed(self) -> bool:
        return self.challenger >= self.required


@dataclass(frozen=True)
class Decision:
    promote: bool
    comparisons: list[Comparison]
    reasons: list[str]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"reference": c.reference, "metric": c.metric, "challenger": c.challenger, "reference_value": c.value,
                 "required": c.required, "passed": c.passed}
                for c in self.comparisons
            ]
        )  # fmt: skip


def decide(scores: pd.DataFrame, metrics: list[str], k: int, tolerance: float, references: list[str]) -> Decision:
    """Compare the challenger's scores (``model, metric, k, value`` rows) with each reference.

    A reference without scores is a reason to refuse, except the serving model, which is
    absent before the first promotion."""
    at_k = scores[(scores["k"] == k) & scores["metric"].isin(metrics)]
    values = at_k.pivot_table(index="model", columns="metric", values="value", aggfunc="first")
    if CHALLENGER not in values.index:
        return Decision(False, [], [f"no '{CHALLENGER}' scores at k={k}: materialize evaluation/llm_test_recommendations first"])
    comparisons, reasons = [], []
    for reference in references:
        if reference not in values.index:
            if reference != SERVING:
                reasons.append(f"no '{reference}' scores at k={k} to compare with: materialize its baseline")
            continue
        for metric in metrics:
            value = float(values.loc[reference, metric])
            comparisons.append(Comparison(reference, metric, float(values.loc[CHALLENGER, metric]), value, value * (1 - tolerance)))
    reasons += [
        f"{c.metric}@{k} {c.challenger:.4f} < {c.required:.4f} ({c.reference} {c.value:.4f} less {tolerance:.0%})"
        for c in comparisons
        if not c.passed
    ]
    return Decision(not reasons, comparisons, reasons)


def latest_scores(conn) -> pd.DataFrame:
    """The newest evaluation run's rows of ``marts.recommendation_metrics``."""
    return conn.execute(
        f"SELECT model, metric, k, value FROM {METRICS} WHERE evaluated_at = (SELECT max(evaluated_at) FROM {METRICS})"
    ).df()


def promoted_engine_or_none(instance: dg.DagsterInstance) -> dict | None:
    """What serves now: the engine the last promotion left in place (None before the first)."""
    promoted = latest_materialization(instance, MODEL_PROMOTION)
    return promoted.metadata if promoted and promoted.metadata.get("model_version") else None


def _stale_evaluation(challenger: dict, evaluated: dict, serving: dict | None) -> list[str]:
    """Reasons the newest metrics do not describe the challenger (and the serving model) yet."""
    reasons = []
    if evaluated.get("model_version") != challenger["model_version"]:
        reasons.append(
            f"the evaluation scored model {evaluated.get('model_version')}, the newest engine is {challenger['model_version']}: "
            "materialize evaluation/llm_test_recommendations and evaluation/recommendation_metrics first"
        )
    if serving and serving["model_version"] != challenger["model_version"] and evaluated.get("serving_model_version") != serving["model_version"]:
        reasons.append(f"the serving model {serving['model_version']} was not re-scored on this test period")
    return reasons


def _promotion_metadata(decision: Decision, serves: dict | None, challenger: dict, previous: dict | None, config: PromotionConfig) -> dict:
    table = decision.table()
    return {
        "model_version": serves["model_version"] if serves else "",
        "path": dg.MetadataValue.path(serves["path"]) if serves else "",
        "decision": "promoted" if decision.promote else ("kept previous" if serves else "nothing to serve"),
        "challenger_version": challenger["model_version"],
        "previous_version": previous["model_version"] if previous else "",
        "reasons": "; ".join(decision.reasons) or "every gate metric at or above every reference",
        "tolerance": config.tolerance,
        **({"comparison": frame_table(table)} if len(table) else {}),
    }


@dg.asset(
    key=MODEL_PROMOTION,
    deps=[RECOMMENDATION_METRICS, INFERENCE_ENGINE, LLM_TEST_RECOMMENDATIONS],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python"},
    check_specs=[
        dg.AssetCheckSpec(
            PROMOTED_CHECK,
            asset=MODEL_PROMOTION,
            description="The newest model was promoted: at least global popularity and the serving model on the gate metrics.",
        )
    ],
    description=(
        "Champion/challenger gate: promotes the newest inference engine to serving when its test-period metrics are "
        "at least those of global popularity and of the model serving now (less a tolerance); otherwise the previous "
        "model keeps serving and the check fails. Records the serving model version and engine path."
    ),
)
def model_promotion(context: dg.AssetExecutionContext, config: PromotionConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    challenger = latest_metadata(context.instance, INFERENCE_ENGINE)
    evaluated = latest_metadata(context.instance, LLM_TEST_RECOMMENDATIONS)
    previous = promoted_engine_or_none(context.instance)
    if previous and previous["model_version"] == challenger["model_version"]:
        decision = Decision(True, [], [f"{challenger['model_version']} already serves"])
    elif config.force:
        decision = Decision(True, [], ["forced by config (force=True)"])
    elif stale := _stale_evaluation(challenger, evaluated, previous):
        decision = Decision(False, [], stale)
    else:
        with warehouse.get_connection() as conn:
            scores = latest_scores(conn)
        decision = decide(scores, config.metrics, config.k, config.tolerance, [POPULARITY, SERVING])
    serves = challenger if decision.promote else previous
    verdict = "promoted" if decision.promote else "NOT promoted"
    context.log.info(f"Model {challenger['model_version']} {verdict}: {'; '.join(decision.reasons) or 'passes the gate'}")
    check = dg.AssetCheckResult(
        check_name=PROMOTED_CHECK,
        passed=decision.promote,
        description="; ".join(decision.reasons) or None,
        metadata={"challenger_version": challenger["model_version"], "serving_version": serves["model_version"] if serves else ""},
    )
    return dg.MaterializeResult(metadata=_promotion_metadata(decision, serves, challenger, previous, config), check_results=[check])

"""The promotion gate's rule, on hand-made scores."""

import pandas as pd

from recsys_assets.evaluation.promotion import decide


def scores(rows: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """``model -> (hit_rate@10, ndcg@10)`` as metric rows."""
    return pd.DataFrame(
        [(model, metric, 10, value) for model, values in rows.items() for metric, value in zip(["hit_rate", "ndcg"], values)],
        columns=["model", "metric", "k", "value"],
    )


def gate(rows, tolerance=0.02):
    return decide(scores(rows), ["hit_rate", "ndcg"], 10, tolerance, ["global_popularity", "llm_serving"])


def test_a_challenger_ahead_of_popularity_and_the_serving_model_is_promoted():
    decision = gate({"llm": (0.6, 0.3), "global_popularity": (0.4, 0.1), "llm_serving": (0.55, 0.29)})
    assert decision.promote and len(decision.comparisons) == 4


def test_a_challenger_behind_the_serving_model_on_one_metric_is_refused_with_the_metric_named():
    decision = gate({"llm": (0.6, 0.25), "global_popularity": (0.4, 0.1), "llm_serving": (0.55, 0.29)})
    assert not decision.promote
    assert decision.reasons == ["ndcg@10 0.2500 < 0.2842 (llm_serving 0.2900 less 2%)"]


def test_the_tolerance_lets_evaluation_noise_through_and_no_more():
    assert gate({"llm": (0.395, 0.2), "global_popularity": (0.4, 0.1)}).promote
    assert not gate({"llm": (0.39, 0.2), "global_popularity": (0.4, 0.1)}).promote


def test_without_popularity_scores_nothing_is_promoted_but_a_first_model_needs_no_serving_scores():
    missing = gate({"llm": (0.6, 0.3)})
    assert not missing.promote and "global_popularity" in missing.reasons[0]
    assert gate({"llm": (0.6, 0.3), "global_popularity": (0.4, 0.1)}).promote


def test_a_negative_tolerance_demands_a_margin():
    assert not decide(scores({"llm": (0.44, 0.2), "global_popularity": (0.4, 0.1)}), ["hit_rate"], 10, -0.15, ["global_popularity"]).promote

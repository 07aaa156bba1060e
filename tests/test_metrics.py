"""Metric functions against cases computed by hand."""

import math

import pandas as pd
import pytest

from recsys_assets.evaluation.metrics import METRICS, TrainingStats, evaluate, judge, relative_deltas

# Held out: user 1 bought items 1, 2, 3; user 2 bought item 4; user 3 bought item 5.
HELD_OUT = pd.DataFrame(
    {"user_id": [1, 1, 1, 2, 3], "item_id": [1, 2, 3, 4, 5], "price": [10.0, 20.0, 30.0, 5.0, 7.0]}
)
# User 1: [1, 99, 2, 8] (99 is not in the catalog); user 2: [7, 4]; user 3: nothing;
# user 4 has no held-out purchases, so its list must not count anywhere.
RECOMMENDATIONS = pd.DataFrame(
    {"user_id": [1, 1, 1, 1, 2, 2, 4, 4], "rank": [1, 2, 3, 4, 1, 2, 1, 2], "item_id": [1, 99, 2, 8, 7, 4, 1, 6]}
)
# Training period: 10 buyers; items 1 and 2 are the two most popular.
STATS = TrainingStats(
    buyers=pd.Series({1: 5, 2: 4, 7: 3, 3: 1, 8: 1}, name="buyers").rename_axis("item_id"),
    training_users=10,
    catalog=frozenset(range(1, 10)),
    categories=pd.Series({1: "a", 2: "b", 3: "a", 4: "c", 5: "d", 6: "a", 7: "c"}).rename_axis("item_id"),
    top_n=2,
)


def metric_values(recommendations: pd.DataFrame, k: int) -> dict[str, float]:
    return evaluate(recommendations, HELD_OUT, STATS, [k]).set_index("metric")["value"].to_dict()


def test_metrics_at_2_by_hand():
    # Top-2: user 1 [1, 99] -> hit at 1; user 2 [7, 4] -> hit at 2; user 3 [] -> nothing.
    values = metric_values(RECOMMENDATIONS, 2)
    idcg_two = 1 + 1 / math.log2(3)
    expected = {
        "hit_rate": 2 / 3,
        "precision": (1 / 2 + 1 / 2 + 0) / 3,
        "recall": (1 / 3 + 1 / 1 + 0) / 3,
        # AP = sum of precision at each hit / min(|T|, K): user 1 (1/1)/2, user 2 (1/2)/1.
        "map": (1 / 2 + 1 / 2 + 0) / 3,
        "ndcg": ((1 / 1) / idcg_two + (1 / math.log2(3)) / 1 + 0) / 3,
        "revenue": (10.0 + 5.0 + 0.0) / 3,
        # Slots 1, 99, 7, 4: only item 1 is among the 2 most popular.
        "top_bias": 1 / 4,
        # User 1 wants {a, b}, gets {a} (99 has no category); user 2 wants {c}, gets {c}; user 3 gets nothing.
        "category_recall": (1 / 2 + 1 + 0) / 3,
        # -log2(buyers / 10), unknown items count as 1 buyer; users with a list only.
        "novelty": ((-math.log2(0.5) - math.log2(0.1)) / 2 + (-math.log2(0.3) - math.log2(0.1)) / 2) / 2,
        # Only user 2's hit (item 4) is outside the popular top-2: 1 / K for user 2.
        "serendipity": (0 + 1 / 2 + 0) / 3,
        # Catalog items recommended to evaluated users: 1, 7, 4 (99 is not in the catalog, user 4 is not evaluated).
        "coverage": 3 / 9,
        "valid_id_rate": 3 / 4,
    }
    assert set(values) == set(METRICS)
    for name, value in expected.items():
        assert values[name] == pytest.approx(value), name


def test_metrics_at_4_count_later_hits_and_divide_by_k():
    values = metric_values(RECOMMENDATIONS, 4)
    # User 1's hits at positions 1 and 3; user 2's list is only 2 long but precision still divides by K.
    assert values["precision"] == pytest.approx((2 / 4 + 1 / 4 + 0) / 3)
    assert values["recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert values["map"] == pytest.approx(((1 / 1 + 2 / 3) / 3 + (1 / 2) / 1 + 0) / 3)
    idcg_three = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg"] == pytest.approx(((1 + 1 / math.log2(4)) / idcg_three + 1 / math.log2(3) + 0) / 3)
    assert values["revenue"] == pytest.approx((10.0 + 20.0 + 5.0 + 0.0) / 3)


def test_a_perfect_list_scores_one():
    perfect = HELD_OUT.assign(rank=HELD_OUT.groupby("user_id").cumcount() + 1)
    values = metric_values(perfect, 3)
    for name in ("hit_rate", "recall", "map", "ndcg", "category_recall", "valid_id_rate"):
        assert values[name] == pytest.approx(1.0), name


def test_no_recommendations_at_all():
    values = metric_values(RECOMMENDATIONS.iloc[:0], 10)
    for name in ("hit_rate", "precision", "recall", "map", "ndcg", "revenue", "category_recall", "serendipity", "coverage"):
        assert values[name] == 0.0, name
    # Nothing recommended: nothing to take a share of.
    assert math.isnan(values["novelty"]) and math.isnan(values["top_bias"]) and math.isnan(values["valid_id_rate"])


def test_users_without_held_out_purchases_do_not_count():
    without_user_4 = RECOMMENDATIONS[RECOMMENDATIONS["user_id"] != 4]
    assert metric_values(RECOMMENDATIONS, 2) == metric_values(without_user_4, 2)
    assert judge(RECOMMENDATIONS, HELD_OUT, 2).users.tolist() == [1, 2, 3]


def test_ranks_are_positions_and_repeats_count_once():
    # Same order as user 1's list, with gaps in the ranks and item 1 repeated further down.
    messy = pd.DataFrame({"user_id": [1, 1, 1, 1, 1], "rank": [7, 3, 20, 5, 9], "item_id": [2, 1, 1, 99, 8]})
    slots = judge(messy, HELD_OUT, 4).slots
    assert slots["item_id"].tolist() == [1, 99, 2, 8]
    assert slots["position"].tolist() == [1, 2, 3, 4]
    assert slots["hit"].tolist() == [True, False, True, False]


def test_relative_deltas():
    metrics = pd.DataFrame(
        {
            "model": ["llm", "pop", "llm", "pop", "llm", "pop"],
            "metric": ["hit_rate", "hit_rate", "top_bias", "top_bias", "hit_rate", "hit_rate"],
            "k": [10, 10, 10, 10, 50, 50],
            "value": [0.3, 0.2, 0.4, 0.8, 0.9, 0.9],
        }
    )
    deltas = relative_deltas(metrics, "llm", 10)
    assert deltas.loc["hit_rate", "pop"] == pytest.approx(0.5)
    assert deltas.loc["top_bias", "pop"] == pytest.approx(-0.5)
    assert relative_deltas(metrics, "llm", 50).loc["hit_rate", "pop"] == pytest.approx(0.0)


def test_standing_names_the_best_baseline_and_the_gap_leaving_out_other_llm_rows():
    from recsys_assets.evaluation.metrics import standing

    values = pd.Series({"llm": 0.4, "ease": 0.5, "global_popularity": 0.3, "llm_serving": 0.9})
    assert standing(values, "llm", "hit_rate@10") == "hit_rate@10: llm 0.400, 20.0% behind the best baseline (ease, 0.500)"
    assert "ahead of the best baseline (ease" in standing(values.replace({0.4: 0.6}), "llm", "x")
    assert standing(pd.Series({"ease": 0.5}), "llm", "x") == "x: nothing to compare llm with"

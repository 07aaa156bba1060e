"""The repeat-aware, sequential and factorisation baselines on hand-built frames: what each
one is meant to capture, and the rules every baseline keeps (n unique items per user, the
popular items as filler, nothing from after the cut-offs, the same lists for the same seed)."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from recsys_assets.evaluation import baselines, baselines_ials, baselines_repeat, baselines_sasrec
from recsys_assets.evaluation.baseline_assets import BASELINE_RECOMMENDERS, IalsConfig, SasrecConfig

CUTOFF = pd.Timestamp("2026-01-10")
HISTORY_END = CUTOFF + timedelta(days=5)
DAY = pd.Timestamp("2025-10-01")


def purchases(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(ts=lambda f: pd.to_datetime(f["ts"]))


def inputs_for(market: pd.DataFrame, users) -> baselines.BaselineInputs:
    return baselines.baseline_inputs(market, users, CUTOFF, HISTORY_END)


def top_items(recommendations: pd.DataFrame, user: int, n: int) -> list[int]:
    return recommendations[recommendations["user_id"] == user].sort_values("rank")["item_id"].head(n).tolist()


# Popularity (distinct buyers): item 1 (3), item 2 (3), item 3 (2), item 4 (1), item 5 (1).
# User 10 bought item 3 three times, item 4 twice long ago, item 1 once; user 20 only after the cut-off.
MARKET = purchases(
    [
        (10, 3, "2026-01-02"), (10, 3, "2026-01-05"), (10, 3, "2026-01-08"),
        (10, 4, "2025-06-01"), (10, 4, "2025-06-02"),
        (10, 1, "2026-01-09"),
        (11, 1, "2026-01-01"), (11, 2, "2026-01-01"), (11, 3, "2026-01-03"),
        (12, 1, "2026-01-02"), (12, 2, "2026-01-04"), (12, 5, "2026-01-06"),
        (13, 2, "2026-01-07"),
        (20, 5, "2026-01-12"),
    ]
)  # fmt: skip


def test_own_frequency_ranks_the_most_bought_item_first_and_fills_with_popularity():
    counted = baselines_repeat.own_frequency(inputs_for(MARKET, [10, 99]), n=5, half_life_days=None)
    # Item 3 three times, item 4 twice, item 1 once; then item 2, the most popular one not bought.
    assert top_items(counted, 10, 5) == [3, 4, 1, 2, 5]
    user = counted[counted["user_id"] == 10].sort_values("rank")
    assert user["score"].tolist()[:3] == [3.0, 2.0, 1.0] and user["score"].tolist()[3:] == [0.0, 0.0]
    # No history: the popular items (ties by id), score 0.
    assert top_items(counted, 99, 3) == [1, 2, 3]
    assert (counted.loc[counted["user_id"] == 99, "score"] == 0).all()


def test_own_frequency_half_life_prefers_recent_purchases():
    # Half a year ago item 4 was bought twice; with a 7-day half-life that weighs less than
    # item 1's single purchase last week.
    recent = baselines_repeat.own_frequency(inputs_for(MARKET, [10]), n=3, half_life_days=7.0)
    assert top_items(recent, 10, 3) == [3, 1, 4]


def test_own_frequency_counts_history_bought_after_the_training_cutoff():
    # User 20's only purchase is after the cut-off but before the evaluated period: its own history.
    recommendations = baselines_repeat.own_frequency(inputs_for(MARKET, [20]), n=2, half_life_days=None)
    assert top_items(recommendations, 20, 2) == [5, 1]


def test_tifu_vectors_decay_within_and_across_groups():
    # Nine baskets (days) of one item each: with m = 3 there are three groups of three.
    events = purchases([(1, item, str((DAY + timedelta(days=item)).date())) for item in range(9)])
    space = baselines.ItemSpace.of(pd.Series(0, index=np.arange(9)))
    vector = baselines_repeat.tifu_vectors(events, np.array([1]), space, group_size=3, within_decay=0.5, group_decay=0.1).toarray()[0]
    # Newest item 8: place 0 in group 0; item 0, the oldest: place 2 in group 2. Each / m / groups.
    expected = [0.5 ** (place % 3) * 0.1 ** (place // 3) / 3 / 3 for place in range(8, -1, -1)]
    np.testing.assert_allclose(vector, expected, rtol=1e-6)


def test_tifu_vectors_make_a_short_oldest_group():
    # Four baskets with m = 3: the newest three form a group, the oldest basket its own group.
    events = purchases([(1, item, str((DAY + timedelta(days=item)).date())) for item in range(4)])
    space = baselines.ItemSpace.of(pd.Series(0, index=np.arange(4)))
    vector = baselines_repeat.tifu_vectors(events, np.array([1]), space, group_size=3, within_decay=0.5, group_decay=0.1).toarray()[0]
    np.testing.assert_allclose(vector, [0.1 / 1 / 2, 0.25 / 3 / 2, 0.5 / 3 / 2, 1 / 3 / 2], rtol=1e-6)


# Users 30-32 bought item 1 with item 7 and, a few days later, item 1 with item 8. Users 40-43
# never bought item 1: they make items 5 and 6 the most popular and item 7 more popular than 8.
# User 50 bought item 1 only: its neighbours are 30-32.
NEIGHBOURS = purchases(
    [(user, item, "2026-01-01") for user in (30, 31, 32) for item in (1, 7)]
    + [(user, item, "2026-01-05") for user in (30, 31, 32) for item in (1, 8)]
    + [(user, item, "2026-01-03") for user in (40, 41, 42, 43) for item in (5, 6)]
    + [(40, 7, "2026-01-03"), (50, 1, "2026-01-08")]
)


def test_tifu_knn_recommends_what_similar_users_recent_baskets_hold():
    recommendations = baselines_repeat.tifu_knn(inputs_for(NEIGHBOURS, [50]), 4, 3, group_size=7, within_decay=0.9, group_decay=0.7, alpha=0.7)
    # Own item first, then the neighbours' newer basket (8) before their older one (7), though 7
    # is more popular; the popular items 5 and 6 only as filler.
    assert top_items(recommendations, 50, 4) == [1, 8, 7, 5]


def test_tifu_knn_without_decay_ties_the_neighbours_baskets():
    recommendations = baselines_repeat.tifu_knn(inputs_for(NEIGHBOURS, [50]), 3, 3, group_size=7, within_decay=1.0, group_decay=1.0, alpha=0.7)
    # Items 7 and 8 score the same; the tie goes to the more popular item 7.
    assert top_items(recommendations, 50, 3) == [1, 7, 8]


def test_tifu_knn_alpha_one_is_the_users_own_vector():
    recommendations = baselines_repeat.tifu_knn(inputs_for(NEIGHBOURS, [50]), 3, 3, group_size=7, within_decay=0.9, group_decay=0.7, alpha=1.0)
    # Nothing from the neighbours: after item 1, popularity (5, 6 have four buyers each).
    assert top_items(recommendations, 50, 3) == [1, 5, 6]


def planted_sequences(users: int, seed: int = 0) -> pd.DataFrame:
    """Each user: fillers (items 10-39) with item 1 followed at once by item 2, and item 3 by item 4."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        sequence = list(rng.choice(np.arange(10, 40), 4, replace=False))
        for first, then in ((1, 2), (3, 4)):
            at = rng.integers(0, len(sequence) + 1)
            sequence[at:at] = [first, then]
        rows += [(user, int(item), DAY + timedelta(days=day)) for day, item in enumerate(sequence)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def test_sasrec_learns_a_planted_sequence():
    market = planted_sequences(150)
    # Users 1000 and 1001 (no training data) just bought item 1, resp. item 3, after some fillers.
    market = pd.concat([market, purchases([(1000, 11, "2026-01-11"), (1000, 1, "2026-01-12"), (1001, 12, "2026-01-11"), (1001, 3, "2026-01-12")])])
    settings = SasrecConfig(factors=32, blocks=1, max_len=10, epochs=40, batch_size=32, learning_rate=5e-3, dropout=0.1).settings()
    recommendations = baselines_sasrec.sasrec(inputs_for(market, [1000, 1001]), 3, settings)
    assert 2 in top_items(recommendations, 1000, 3)
    assert 4 in top_items(recommendations, 1001, 3)


def test_ials_recommends_co_purchased_items():
    # Two groups: 20 users buy two of {1, 2, 3}, 30 users two of {4, 5, 6} (so 4-6 are more popular).
    pairs = [(1, 2), (1, 3), (2, 3)]
    rows = [(user, item, "2026-01-02") for user in range(20) for item in pairs[user % 3]]
    rows += [(100 + user, item + 3, "2026-01-03") for user in range(30) for item in pairs[user % 3]]
    market = purchases(rows + [(999, 1, "2026-01-12")])
    recommendations = baselines_ials.ials(inputs_for(market, [999]), 3, IalsConfig(factors=4).settings())
    assert set(top_items(recommendations, 999, 3)) == {1, 2, 3}


NEW_BASELINES = ["own_frequency", "tifu_knn", "sasrec", "ials"]


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_each_baseline_returns_n_unique_items_per_user(name):
    users = [10, 11, 20, 99]  # with a history, one only after the cut-off, none at all
    recommendations = BASELINE_RECOMMENDERS[name](inputs_for(MARKET, users), 4)
    assert list(recommendations.columns) == ["user_id", "rank", "item_id", "score"]
    for user in users:
        rows = recommendations[recommendations["user_id"] == user]
        assert rows["rank"].tolist() == [1, 2, 3, 4]
        assert rows["item_id"].nunique() == 4
    assert (recommendations["score"] >= 0).all()


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_each_baseline_ignores_purchases_from_the_evaluated_period(name):
    users = [10, 11, 12, 20]
    leaked = pd.concat([MARKET, purchases([(10, 5, "2026-01-20"), (11, 4, "2026-01-20"), (12, 4, "2026-01-21")])])
    assert BASELINE_RECOMMENDERS[name](inputs_for(leaked, users), 5).equals(BASELINE_RECOMMENDERS[name](inputs_for(MARKET, users), 5))


@pytest.mark.parametrize("name", ["sasrec", "ials"])
def test_seeded_baselines_are_deterministic(name):
    inputs = inputs_for(planted_sequences(40), [0, 1, 2])
    assert BASELINE_RECOMMENDERS[name](inputs, 10).equals(BASELINE_RECOMMENDERS[name](inputs, 10))


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_each_baseline_refuses_leaked_inputs(name):
    on_the_cutoff = purchases([(10, 1, "2026-01-10")])
    with pytest.raises(ValueError, match="on or after the cut-off"):
        BASELINE_RECOMMENDERS[name](baselines.BaselineInputs(on_the_cutoff, on_the_cutoff.iloc[:0], np.array([10]), CUTOFF, HISTORY_END), 3)


@pytest.mark.parametrize("name", NEW_BASELINES)
def test_another_users_purchases_after_the_training_cutoff_never_reach_the_fit(name):
    # User 20 buys a lot between the training cut-off and the evaluated period (its history, not
    # training data): the other users' lists stay the same.
    busy = pd.concat([MARKET, purchases([(20, item, "2026-01-13") for item in (1, 2, 1, 2)])])
    quiet, noisy = (BASELINE_RECOMMENDERS[name](inputs_for(frame, [10, 11, 20, 99]), 4) for frame in (MARKET, busy))
    for user in (10, 11, 99):
        assert top_items(quiet, user, 4) == top_items(noisy, user, 4)

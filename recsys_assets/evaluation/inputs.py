"""What the evaluation reads from the warehouse, and where the leakage rules are enforced.

What a baseline may see (see splits.py): it is fitted on purchases before the training
cut-off (``val_start``), and ranks for a user from the user's purchases before the test
period, the same history the LLM's test prompt holds. Nothing on or after ``test_start`` is
read: the SQL cuts it off before any data reaches Python. Only the metrics read the test
period: the held-out purchases (what each user bought in it, the prompt dataset's definition).
"""

import pandas as pd

from recsys_assets.evaluation import baselines
from recsys_assets.evaluation.metrics import TrainingStats, training_stats
from recsys_assets.keys import FCT_PURCHASES, STG_ITEMS, STG_USERS
from recsys_assets.llm_data.history import items_bought_between
from resources.splits import SplitDates

SOURCE_DEPS = [FCT_PURCHASES, STG_ITEMS, STG_USERS]


def load_baseline_inputs(conn, dates: SplitDates) -> baselines.BaselineInputs:
    history_end = dates.prompt_cutoff("test")
    # Ordered, so that the same events give bit-identical scores (float sums in a fixed order).
    purchases = conn.execute(
        "SELECT user_id, item_id, ts FROM staging.fct_purchases WHERE ts < ? ORDER BY user_id, ts, item_id", [history_end]
    ).df()
    users = conn.execute("SELECT user_id FROM staging.stg_users").df()["user_id"]
    return baselines.baseline_inputs(purchases, users, dates.train_cutoff, history_end)


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

"""The asset checks a team looks at first, each broken on purpose: a check that cannot fail is no check.

The real runs (test_llm_data, test_candidates, test_evaluation, test_main_run) assert that they
pass on healthy data; here each one meets the fault it exists for.
"""

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from recsys_assets.candidates.checks import CHECKS, build_check
from recsys_assets.candidates.tables import TABLES
from recsys_assets.evaluation.assets import with_generated_valid_id_rate
from recsys_assets.evaluation.checks import baseline_lists_check
from recsys_assets.llm_data.checks import DatasetChecks, leakage_check, round_trip_check, template_check, token_budget_check
from recsys_assets.llm_data.prompts import build_prompt
from recsys_assets.llm_data.tokenization import train_id_tokenizer
from recsys_assets.serving.checks import every_user_served_check, full_lists_check, valid_ids_check
from resources.splits import SplitDates

USERS = pd.Series([1, 2, 3])
CATALOG = pd.Series(range(100, 110))


def lists(lengths: dict[int, int], first_item: int = 100) -> pd.DataFrame:
    rows = [(user, rank, first_item + rank - 1) for user, n in lengths.items() for rank in range(1, n + 1)]
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id"])


# --- recommendations ------------------------------------------------------------------------


def test_valid_ids_fails_on_a_model_that_generates_ids_outside_the_catalog():
    served = lists({1: 3, 2: 3, 3: 3})
    assert valid_ids_check(generated_ids=100, valid_ids=100, served=served, catalog=CATALOG).passed
    broken = valid_ids_check(generated_ids=100, valid_ids=91, served=served, catalog=CATALOG)  # 9 % made up, then dropped
    assert not broken.passed and broken.metadata["valid_id_rate"].value == 0.91


def test_valid_ids_fails_with_an_error_on_a_served_id_outside_the_catalog():
    served = lists({1: 3}).assign(item_id=[100, 101, 999])
    result = valid_ids_check(generated_ids=3, valid_ids=3, served=served, catalog=CATALOG)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["served_ids_outside_catalog"].value == 1


def test_valid_ids_passes_a_shard_served_without_a_model():
    result = valid_ids_check(generated_ids=0, valid_ids=0, served=lists({1: 3}), catalog=CATALOG)
    assert result.passed and result.metadata["valid_id_rate"].value == "no ids generated"


def test_full_lists_warns_when_lists_are_short():
    assert full_lists_check(lists({1: 5, 2: 5, 3: 5}), USERS, max_items=5, catalog_size=10, excluded=None).passed
    short = full_lists_check(lists({1: 5, 2: 5, 3: 2}), USERS, max_items=5, catalog_size=10, excluded=None)
    assert not short.passed and short.severity == dg.AssetCheckSeverity.WARN
    assert short.metadata["full_list_share"].value == 0.6667


def test_full_lists_counts_a_list_as_full_when_the_user_cannot_get_more():
    # A catalog of 10 with 7 already bought and left out: 3 items is every item there is to offer.
    excluded = pd.DataFrame({"user_id": [3] * 7, "item_id": range(100, 107)})
    assert full_lists_check(lists({1: 5, 2: 5, 3: 3}), USERS, max_items=5, catalog_size=10, excluded=excluded).passed


def test_every_user_served_fails_on_a_user_without_recommendations():
    assert every_user_served_check(lists({1: 1, 2: 1, 3: 1}), USERS).passed
    missing = every_user_served_check(lists({1: 1, 3: 1}), USERS)
    assert not missing.passed and missing.metadata["users_without_recommendations"].value == 1


def test_the_metric_valid_id_rate_of_the_llm_is_its_generated_ids_rate():
    metrics = pd.DataFrame(
        {"model": ["llm", "llm", "ease"], "metric": ["valid_id_rate", "hit_rate", "valid_id_rate"], "k": 10, "value": [1.0, 0.5, 1.0]}
    )
    rated = with_generated_valid_id_rate(metrics, 0.914, ("llm",)).set_index(["model", "metric"])["value"]
    assert rated["llm", "valid_id_rate"] == 0.914  # the served slots were filtered: 1.0 said nothing
    assert rated["llm", "hit_rate"] == 0.5 and rated["ease", "valid_id_rate"] == 1.0


# --- prompt dataset and tokenizer -----------------------------------------------------------

DATES = SplitDates(val_start=date(2026, 3, 1), test_start=date(2026, 3, 15), end=date(2026, 3, 28))
PURCHASES = pd.DataFrame(
    {"user_id": [1, 1, 2], "item_id": [100, 101, 100], "ts": pd.to_datetime(["2026-01-05", "2026-02-10", "2026-03-20"])}
)


def example(user: int, history: list[int], split: str = "train", cutoff: date = date(2026, 3, 1), **columns) -> dict:
    prompt = build_prompt(history, user, 5, 30, 1, 0.5)
    return {"user_id": user, "split": split, "cutoff": cutoff, "prompt": prompt, "prompt_tokens": 100, "target_tokens": 50, **columns}


def test_template_fails_on_a_prompt_off_the_template_or_for_another_user():
    healthy = pd.DataFrame([example(1, [100, 101]), example(2, [])])
    assert template_check(healthy).passed
    edited = healthy.assign(prompt=healthy["prompt"].str.replace("purchase history", "history"))
    assert not template_check(edited).passed
    swapped = healthy.assign(user_id=[2, 1])
    assert template_check(swapped).metadata["violations"].value == 2


def test_token_budget_fails_on_an_example_longer_than_max_seq_len():
    examples = pd.DataFrame([example(1, [100]), example(2, [], split="serve", target_tokens=0)])
    assert token_budget_check(examples, max_seq_len=150, serve_target_tokens=50).passed
    assert not token_budget_check(examples, max_seq_len=149, serve_target_tokens=0).passed  # the train example: 150
    # A serve prompt must leave room for the answer the model will generate.
    assert not token_budget_check(examples.tail(1), max_seq_len=150, serve_target_tokens=60).passed


def test_leakage_fails_on_a_history_item_bought_after_the_cutoff():
    healthy = pd.DataFrame([example(1, [101, 100]), example(2, [], split="test", cutoff=DATES.test_start)])
    assert leakage_check(healthy, PURCHASES, DATES).passed
    # User 2 bought item 100 in the test period: in a test prompt it is the answer, leaked.
    leaked = pd.DataFrame([example(2, [100], split="test", cutoff=DATES.test_start)])
    result = leakage_check(leaked, PURCHASES, DATES)
    assert not result.passed and result.metadata["violations"].value == 1


def test_checks_over_chunks_count_what_each_chunk_broke():
    """The asset checks the dataset a chunk of users at a time: a fault in a later chunk still fails."""
    checks = DatasetChecks(PURCHASES, DATES, max_seq_len=150)
    checks.add(pd.DataFrame([example(1, [101, 100])]), serve_target_tokens=50)
    checks.add(pd.DataFrame([example(2, [100], split="test", cutoff=DATES.test_start)]), serve_target_tokens=50)
    checks.add(pd.DataFrame([example(3, [], split="serve", target_tokens=0, prompt_tokens=120)]), serve_target_tokens=50)
    template, budget, leakage = checks.results()
    assert template.passed and template.metadata["checked"].value == 3
    assert not budget.passed and budget.metadata["longest"].value == 170  # the serve prompt beside its answer's room
    assert not leakage.passed and leakage.metadata["violations"].value == 1 and leakage.metadata["checked"].value == 3


def test_leakage_fails_on_a_training_example_cut_off_in_the_test_period():
    late = pd.DataFrame([example(1, [101, 100], split="train", cutoff=date(2026, 3, 16))])
    assert not leakage_check(late, PURCHASES, DATES).passed


def test_round_trip_fails_on_a_tokenizer_that_cannot_spell_an_id():
    corpus = [build_prompt([100, 101, 102], 1, 5, 30, 1, 0.5)]
    tokenizer = train_id_tokenizer("digits", corpus)
    assert round_trip_check(tokenizer, [100, 101, 987654]).passed
    tokenizer.backend_tokenizer.decoder = None  # decodes with spaces between the digit tokens
    broken = round_trip_check(tokenizer, [100, 101])
    assert not broken.passed and broken.metadata["violations"].value == 2


# --- candidates and baselines ---------------------------------------------------------------


@pytest.fixture
def warehouse(tmp_path):
    """A warehouse holding healthy candidate tables that each test then breaks."""
    from dagster_duckdb import DuckDBResource

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA candidates")
        conn.execute(
            "CREATE TABLE candidates.item_vectors AS SELECT * FROM (VALUES "
            "(1::BIGINT, [0.6, 0.8]::FLOAT[], 3), (2, [1.0, 0.0]::FLOAT[], 2), (3, [0.0, 1.0]::FLOAT[], 2)) t(item_id, vector, buyers)"
        )
        conn.execute(
            "CREATE TABLE candidates.interest_clusters AS SELECT * FROM (VALUES "
            "(1::BIGINT, 0, 0.9::FLOAT, 2), (2, 0, 0.8, 2), (3, 1, 1.0, 1)) t(item_id, cluster_id, centroid_similarity, cluster_size)"
        )
    return path, DuckDBResource(database=str(path))


def candidate_check(name: str, table: str):
    return build_check(next(check for check in CHECKS if check.name == name and check.table.name == table))


def test_unit_vectors_fails_on_a_zero_or_unnormalised_vector(warehouse):
    path, resource = warehouse
    check = candidate_check("unit_vectors", "item_vectors")
    assert check(warehouse=resource).passed
    with duckdb.connect(str(path)) as conn:
        conn.execute("UPDATE candidates.item_vectors SET vector = [0.0, 0.0]::FLOAT[] WHERE item_id = 2")
        conn.execute("UPDATE candidates.item_vectors SET vector = [3.0, 4.0]::FLOAT[] WHERE item_id = 3")
    result = check(warehouse=resource)
    assert not result.passed and result.metadata["violations"].value == 2


def test_cluster_sizes_fail_on_a_wrong_size_or_an_empty_cluster(warehouse):
    path, resource = warehouse
    check = candidate_check("cluster_sizes_consistent", "interest_clusters")
    assert check(warehouse=resource).passed
    with duckdb.connect(str(path)) as conn:
        conn.execute("UPDATE candidates.interest_clusters SET cluster_id = 2 WHERE item_id = 3")  # cluster 1 is now empty
    assert not check(warehouse=resource).passed


def test_a_dominant_cluster_warns(warehouse):
    path, resource = warehouse
    check = candidate_check("no_dominant_cluster", "interest_clusters")
    with duckdb.connect(str(path)) as conn:
        conn.execute("INSERT INTO candidates.interest_clusters VALUES (4, 1, 1.0, 2)")
    assert check(warehouse=resource).passed  # 2 and 2 of 4 items: not over half
    with duckdb.connect(str(path)) as conn:
        conn.execute("UPDATE candidates.interest_clusters SET cluster_id = 0, cluster_size = 3 WHERE item_id = 4")
    result = check(warehouse=resource)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN


def test_every_candidate_table_check_names_a_candidate_table():
    assert {check.table for check in CHECKS} <= set(TABLES)


def test_a_baseline_without_lists_fails():
    assert baseline_lists_check(lists({1: 2, 2: 2, 3: 2}), USERS).passed
    assert not baseline_lists_check(lists({}), USERS).passed
    assert baseline_lists_check(lists({1: 2, 2: 2}), USERS).metadata["users_without_a_list"].value == 1

"""Prompt dataset and id tokenizer: template, target mix, leakage, length control, round trips."""

import re
from datetime import date

import pandas as pd
import pytest

from recsys_assets.llm_data.dataset import Builder, DatasetSpec, MarketData, training_sample
from recsys_assets.llm_data.prompts import TEMPLATE, build_prompt, fit_history
from recsys_assets.llm_data.targets import PRESETS, mix_target, quotas, resolve_shares
from recsys_assets.llm_data.token_lengths import TokenLengths
from recsys_assets.llm_data.tokenization import OPTIONS, round_trips, tokens_per_id, train_id_tokenizer
from resources.splits import SplitDates, split_dates

# A word counter: its lengths do not add up over ids (a bracket and an id are one word), so the builder
# falls back to fitting text by text.
WORDS = TokenLengths(lambda texts: [len(text.split()) for text in texts])

PROMPT_PATTERN = re.compile(
    r"Based on the purchase history: \[((\d+, )*\d+)?\]\. What next products will be bought by the user: "
    r"\d+, geo: (\w+), age: (\d+|unknown), gender: (\d+|unknown), purchasing power: (\d\.\d\d|unknown)\?"
)


def test_prompt_follows_the_method_template():
    prompt = build_prompt([8363834, 482976, 4710760], 123, 567, 48, 1, 0.5)
    assert prompt == (
        "Based on the purchase history: [8363834, 482976, 4710760]. What next products will be bought by the user: "
        "123, geo: 567, age: 48, gender: 1, purchasing power: 0.50?"
    )
    cold = build_prompt([], 123, None, float("nan"), pd.NA, None)  # pd.NA: a nullable integer column
    assert PROMPT_PATTERN.fullmatch(cold) and "[]" in cold and cold.count("unknown") == 4
    assert TEMPLATE.count("{") == 6


def test_quotas_follow_shares_exactly():
    assert quotas({"a": 0.25, "b": 0.25, "c": 0.5}, 20) == {"a": 5, "b": 5, "c": 10}
    assert sum(quotas({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10).values()) == 10


def test_mix_fills_quotas_then_backfills_and_excludes():
    candidates = {"own_cart": [1, 2, 3, 4], "similar_to_cart": [3, 10, 11, 12, 13, 14, 15, 16]}
    mixed = mix_target(candidates, {"own_cart": 0.5, "similar_to_cart": 0.5}, size=6, exclude=[2])
    items = [item for item, _ in mixed]
    assert len(items) == len(set(items)) == 6 and 2 not in items
    sources = [source for _, source in mixed]
    assert sources.count("own_cart") == 3 and sources.count("similar_to_cart") == 3
    short = mix_target({"own_cart": [1], "similar_to_cart": [5, 6, 7, 8]}, {"own_cart": 0.5, "similar_to_cart": 0.5}, size=4)
    assert [s for _, s in short].count("similar_to_cart") == 3  # the short source's slots are backfilled


def test_next_purchases_may_repeat_the_history_other_sources_may_not():
    candidates = {"next_purchases": [7, 8], "own_cart": [7, 9]}
    mixed = mix_target(candidates, {"next_purchases": 0.5, "own_cart": 0.5}, size=4, exclude=[7])
    assert sorted(mixed) == [(7, "next_purchases"), (8, "next_purchases"), (9, "own_cart")]


def _windowed_market() -> tuple[MarketData, SplitDates]:
    """One user buying item 100 + day every 7 days; the training cut-off is 2026-03-01."""
    days = pd.date_range("2026-01-01", "2026-03-28", freq="7D")
    purchases = pd.DataFrame({"user_id": 1, "item_id": [100 + i for i in range(len(days))], "ts": days})
    empty = pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64"), "ts": pd.Series(dtype="datetime64[ns]")})
    users = pd.DataFrame({"user_id": [1], "gender": [0], "age": [30], "geo": [5]})
    market = MarketData(purchases, empty, empty, users, price_percentile={100 + i: 0.5 for i in range(len(days))})
    return market, SplitDates(val_start=date(2026, 3, 1), test_start=date(2026, 3, 15), end=date(2026, 3, 28))


def test_training_windows_learn_next_purchases_from_before_the_cutoff_only():
    market, dates = _windowed_market()
    spec = DatasetSpec({"next_purchases": 1.0}, train_windows=4, window_days=14)
    train = Builder(market, spec, dates, WORDS).examples("train")
    # Cut-offs 03-01 (its window is the val period: no example), 02-15, 02-01, 01-18.
    assert sorted(map(str, train["cutoff"])) == ["2026-01-18", "2026-02-01", "2026-02-15"]
    purchases = market.purchases.set_index("item_id")["ts"]
    for row in train.itertuples():
        bought = [purchases[i] for i in row.target_item_ids]
        assert all(pd.Timestamp(row.cutoff) <= ts < pd.Timestamp(row.cutoff) + pd.Timedelta(days=14) for ts in bought)
        assert max(bought) < pd.Timestamp(dates.val_start)
        history = [int(i) for i in re.search(r"\[(.*?)\]", row.prompt).group(1).split(", ")]
        assert all(purchases[i] < pd.Timestamp(row.cutoff) for i in history)


def test_next_purchases_target_needs_an_earlier_window():
    with pytest.raises(ValueError, match="train_windows to 2 or more"):
        DatasetSpec({"next_purchases": 1.0}, train_windows=1)


def test_presets_resolve_to_normalised_shares():
    for name in PRESETS:
        assert sum(resolve_shares(name).values()) == pytest.approx(1.0)
    assert resolve_shares("own", {"own_cart": 2, "interest_clusters": 2}) == {"own_cart": 0.5, "interest_clusters": 0.5}
    with pytest.raises(ValueError, match="Unknown target strategy"):
        resolve_shares("nope")


def test_fit_history_keeps_the_newest_items_within_budget():
    history = list(range(1_000_000, 1_000_100))  # newest first

    def count(h):
        return 10 + 3 * len(h)

    kept = fit_history(history, target_tokens=40, max_seq_len=110, count_tokens=count)
    assert kept == history[:20]  # 10 + 3 * 20 = 70 = 110 - 40
    assert fit_history(history[:5], 40, 110, count) == history[:5]


def test_split_dates_hold_out_the_last_days():
    dates = split_dates(date(2026, 6, 30), val_days=14, test_days=14)
    assert dates.test_start == date(2026, 6, 17) and dates.val_start == date(2026, 6, 3)
    assert dates.period("test") == (date(2026, 6, 17), date(2026, 7, 1))


@pytest.fixture(scope="module")
def id_corpus():
    import numpy as np

    rng = np.random.default_rng(0)
    popular = rng.integers(1_000_000, 999_999_999, size=300)
    lists = [rng.choice(popular, size=12, p=np.arange(300, 0, -1) / np.arange(300, 0, -1).sum()) for _ in range(400)]
    corpus = [build_prompt(ids[:8], 4242, 77, 30, 1, 0.3) for ids in lists] + [", ".join(map(str, ids)) for ids in lists]
    return corpus, popular.tolist()


@pytest.mark.parametrize("option", OPTIONS)
def test_every_tokenizer_round_trips_ids_exactly(id_corpus, option):
    corpus, ids = id_corpus
    tokenizer = train_id_tokenizer(option, corpus, bpe_vocab_size=2000)
    unseen = [1_000_000, 999_999_999, 5_000_123]
    assert round_trips(tokenizer, ids + unseen) == []
    text = corpus[0]
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_grouped_and_trained_tokenizers_need_fewer_tokens_per_id(id_corpus):
    corpus, ids = id_corpus
    per_id = {option: tokens_per_id(train_id_tokenizer(option, corpus, bpe_vocab_size=2000), ids) for option in OPTIONS}
    assert per_id["digits"] >= 7  # 7-9 digit ids, one token per digit
    assert per_id["grouped"] < per_id["digits"] * 0.5
    assert per_id["bpe"] < per_id["grouped"]


# --- the assets, on the small marketplace -------------------------------------------------


@pytest.fixture(scope="module")
def prompt_examples(featured_platform):
    import dagster as dg

    from recsys_assets.candidates.assets import candidate_assets
    from recsys_assets.llm_data.assets import llm_data_assets

    instance = dg.DagsterInstance.ephemeral()
    # The reference's similar_items mix with targets of 8 items (quota 2 per source), so that
    # many users of the small marketplace have enough candidates in every source.
    # The tokenizers learn from a sample of 500 of the 800 users.
    run_config = {"ops": {"llm_data__prompt_dataset": {"config": {"target_items": 8, "target_strategy": "similar_items"}},
                          "llm_data__id_tokenizer": {"config": {"corpus_users": 500}}}}  # fmt: skip
    result = dg.materialize(
        [*candidate_assets, *llm_data_assets], resources=featured_platform.resources(), instance=instance, run_config=run_config
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key.path[0] == "llm_data"}
    assert checks == {
        "catalog_ids_round_trip": True, "prompts_follow_template": True, "token_budget_respected": True, "no_test_period_leakage": True
    }  # fmt: skip
    materialization = result.asset_materializations_for_node("llm_data__prompt_dataset")[0]
    tokenizer = result.asset_materializations_for_node("llm_data__id_tokenizer")[0]
    folder = materialization.metadata["path"].value
    examples = pd.concat(pd.read_parquet(f"{folder}/{split}.parquet") for split in ("train", "val", "test", "serve"))
    return examples, materialization.metadata, tokenizer.metadata


def test_every_prompt_matches_the_template_and_fits(prompt_examples):
    examples, metadata, _ = prompt_examples
    assert all(PROMPT_PATTERN.fullmatch(p) for p in examples["prompt"])
    assert (examples["prompt_tokens"] + examples["target_tokens"] <= 310).all()
    assert metadata["max_total_tokens"].value <= 310
    assert metadata["examples_fitted_text_by_text"].value == 0  # token sums matched every whole text
    assert set(examples["split"]) == {"train", "val", "test", "serve"}


def test_realized_target_shares_follow_the_configured_mix(prompt_examples):
    examples, _, _ = prompt_examples
    train = examples[examples["split"] == "train"]
    # Where every source had enough candidates, the realized mix is the configured one; elsewhere
    # short sources are backfilled (and the metadata says how often).
    full = train[train["mix_complete"]]
    assert len(full) >= 100  # enough examples for the shares to mean something
    realized = full["target_sources"].explode().value_counts(normalize=True)
    for source, share in resolve_shares("similar_items").items():
        assert realized.get(source, 0.0) == pytest.approx(share, abs=0.1), (source, realized.to_dict())


def test_no_future_item_leaks_into_a_training_prompt(prompt_examples, featured_platform):
    examples, metadata, _ = prompt_examples
    dates = metadata["split_dates"].value
    purchases = featured_platform.df("SELECT user_id, item_id, ts FROM staging.fct_purchases")
    before = purchases[purchases["ts"] < pd.Timestamp(dates["val_start"])]
    seen_before = set(zip(before["user_id"], before["item_id"]))
    test = examples[examples["split"] == "test"]
    train = examples[examples["split"] == "train"]
    train_prompts = train[train["cutoff"] == train["cutoff"].max()].set_index("user_id")["prompt"]
    checked = 0
    for user, items in zip(test["user_id"], test["target_item_ids"]):
        new_items = [i for i in items if (user, i) not in seen_before]  # first bought in the held-out period
        if user in train_prompts.index:
            history = re.search(r"\[(.*?)\]", train_prompts[user]).group(1)
            assert not set(new_items) & {int(x) for x in history.split(", ") if x}
            checked += len(new_items)
    assert checked > 0
    # and test targets are exactly the purchases in the test period
    in_test = purchases[purchases["ts"] >= pd.Timestamp(dates["test_start"])]
    expected = in_test.groupby("user_id")["item_id"].nunique()
    got = test.set_index("user_id")["target_item_ids"].map(len)
    assert (got == expected.loc[got.index].clip(upper=8)).all()


def test_capping_keeps_the_newest_purchases(prompt_examples, featured_platform):
    examples, metadata, _ = prompt_examples
    purchases = featured_platform.df("SELECT user_id, item_id, ts FROM staging.fct_purchases ORDER BY ts DESC, item_id")
    serve = examples[examples["split"] == "serve"].set_index("user_id")
    capped = serve[serve["history_length"] > 0].head(50)
    for user, row in capped.iterrows():
        newest = purchases.loc[purchases["user_id"] == user, "item_id"].tolist()[: row["history_length"]]
        assert re.search(r"\[(.*?)\]", row["prompt"]).group(1) == ", ".join(map(str, newest))


def test_cold_start_users_get_attribute_only_prompts(prompt_examples):
    examples, _, _ = prompt_examples
    serve = examples[examples["split"] == "serve"]
    cold = serve[serve["history_length"] == 0]
    assert len(cold) > 0 and cold["prompt"].str.contains(r"history: \[\]", regex=True).all()


def test_tokenizer_asset_reports_the_side_by_side_comparison(prompt_examples):
    from transformers import PreTrainedTokenizerFast

    from gpu_jobs.prompt_format import generation_prefix

    examples, _, tokenizer_metadata = prompt_examples
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_metadata["path"].value)
    train = examples[examples["split"] == "train"].head(50)
    for prompt, target in zip(train["prompt"], train["target"]):
        ids = tokenizer(generation_prefix(prompt) + target)["input_ids"]
        assert tokenizer.unk_token_id not in ids  # every word of the model's text is in the vocabulary
    table = tokenizer_metadata["comparison"]  # a table, rendered inline
    assert [record.data["tokenizer"] for record in table.records] == list(OPTIONS)
    assert tokenizer_metadata["tokens_per_id"].value < 7
    # The sample, and a user for each attribute value it lacked; every catalog id still round-trips (the fixture's check).
    assert 500 <= tokenizer_metadata["corpus_users"].value < 800


def _crowd_market(users: int = 400):
    """100 cold-start users, 200 light (1 purchase before the cut-off), 100 heavy (16), and every
    user buys again in the last training window, so that each can get a next_purchases target."""
    rows = []
    for user in range(users):
        earlier = 0 if user < 100 else (1 if user < 300 else 16)
        rows += [(user, 1000 + k, pd.Timestamp("2026-01-05") + pd.Timedelta(days=k % 30)) for k in range(earlier)]
        rows.append((user, 5000 + user % 7, pd.Timestamp("2026-02-20")))
    purchases = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    empty = purchases.head(0)
    people = pd.DataFrame({"user_id": range(users), "gender": 0, "age": 30, "geo": 5})
    prices = {item: 0.5 for item in purchases["item_id"].unique()}
    dates = SplitDates(val_start=date(2026, 3, 1), test_start=date(2026, 3, 15), end=date(2026, 3, 28))
    return MarketData(purchases, empty, empty, people, price_percentile=prices), dates


def test_the_training_sample_is_bounded_and_keeps_every_kind_of_buyer():
    market, dates = _crowd_market()
    sample = training_sample(market.purchases, market.users["user_id"], dates.val_start - pd.Timedelta(days=14), size=40)
    assert len(sample) <= 40
    cold, light, heavy = (sum(lo <= u < hi for u in sample) for lo, hi in ((0, 100), (100, 300), (300, 400)))
    assert (cold, light, heavy) == (10, 20, 10)  # each kind in its share of the users
    assert sample == training_sample(market.purchases, market.users["user_id"], dates.val_start - pd.Timedelta(days=14), 40)
    assert training_sample(market.purchases, market.users["user_id"], dates.val_start, size=0) == set(range(400))


def test_training_examples_come_from_the_sample_and_serve_prompts_from_everyone():
    market, dates = _crowd_market()
    spec = DatasetSpec({"next_purchases": 1.0}, train_windows=2, window_days=14, train_users=40)
    builder = Builder(market, spec, dates, WORDS)
    train, serve = builder.examples("train"), builder.examples("serve")
    assert 0 < train["user_id"].nunique() <= 40 and set(train["user_id"]) <= builder.train_users
    assert (train["history_length"] == 0).any()  # cold-start users learn too
    assert sorted(serve["user_id"]) == list(range(400))


def _mixed_length_market(users: int = 300):
    """Histories of 0-60 items with ids of 1-7 digits, so that the token budget cuts many of them."""
    rng = __import__("numpy").random.default_rng(3)
    rows = [
        (user, int(rng.choice([7, 42, 913, 4821, 70312, 881234, 9123456]) + k), pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(k)))
        for user in range(users)
        for k in range(int(rng.integers(0, 60)))
    ]
    rows += [(user, 5000 + user % 11, pd.Timestamp("2026-03-03")) for user in range(0, users, 2)]
    purchases = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    people = pd.DataFrame({"user_id": range(users), "gender": 1, "age": 41, "geo": 12})
    dates = SplitDates(val_start=date(2026, 3, 1), test_start=date(2026, 3, 15), end=date(2026, 3, 28))
    market = MarketData(purchases, purchases.head(0), purchases.head(0), people, {i: 0.5 for i in purchases["item_id"].unique()})
    return market, dates


@pytest.mark.parametrize("option", OPTIONS)
def test_token_sums_fit_exactly_what_counting_whole_texts_fits(option):
    from recsys_assets.llm_data.dataset import build_dataset

    market, dates = _mixed_length_market()
    corpus = [build_prompt(list(range(1000 * u, 1000 * u + 30)), u, 1, 2, 3, 0.5) for u in range(200)]
    tokenizer = train_id_tokenizer(option, corpus, bpe_vocab_size=600)
    spec = DatasetSpec({"next_purchases": 1.0}, train_windows=2, max_seq_len=120)

    by_sums = build_dataset(market, spec, dates, TokenLengths.of_tokenizer(tokenizer))
    assert by_sums.attrs["fitted_text_by_text"] == 0  # the id tokenizers' lengths add up
    assert (by_sums["history_length"] < 50).sum() > 100  # the budget cut most histories
    whole = [len(ids) for ids in tokenizer([p + " Answer: " for p in by_sums["prompt"]], add_special_tokens=False)["input_ids"]]
    assert by_sums["prompt_tokens"].tolist() == whole
    assert (by_sums["prompt_tokens"] + by_sums["target_tokens"] <= spec.max_seq_len).all()

    # Sums made wrong on purpose: every example with two ids or more is refitted text by text, to the same result.
    off = TokenLengths.of_tokenizer(tokenizer)
    off.separator += 1
    text_by_text = build_dataset(market, spec, dates, off)
    assert text_by_text.attrs["fitted_text_by_text"] > 100
    pd.testing.assert_frame_equal(text_by_text, by_sums)


def test_examples_do_not_depend_on_how_many_users_are_built_at_a_time(tmp_path):
    """The asset builds a chunk of users at a time (flat memory at 1M users); the chunks must add up
    to the one-frame dataset, in the files too."""
    from recsys_assets.llm_data.dataset import SPLITS, Builder, one_frame
    from recsys_assets.llm_data.dataset_files import SplitFiles

    market, dates = _mixed_length_market()
    spec = DatasetSpec({"next_purchases": 1.0}, train_windows=2, max_seq_len=120)
    whole = Builder(market, spec, dates, WORDS)
    expected = one_frame(whole.chunks())
    chunked = Builder(market, spec, dates, WORDS, users_per_chunk=7)
    with SplitFiles(tmp_path / "dataset") as files:
        for chunk in chunked.chunks():
            assert chunk["user_id"].nunique() <= 7
            files.write(chunk)
    assert chunked.serve_target_tokens == whole.serve_target_tokens > 0
    written = pd.concat([pd.read_parquet(tmp_path / "dataset" / f"{split}.parquet") for split in SPLITS], ignore_index=True)
    assert len(written) == len(expected) and set(written["split"]) == set(expected["split"]) >= {"train", "serve"}
    for column in ("user_id", "split", "prompt", "target", "prompt_tokens", "target_tokens", "history_length"):
        assert written[column].tolist() == expected[column].tolist(), column
    assert written["target_item_ids"].map(list).tolist() == expected["target_item_ids"].tolist()

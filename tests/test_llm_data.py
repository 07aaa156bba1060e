"""Prompt dataset and id tokenizer: template, target mix, leakage, length control, round trips."""

import re
from datetime import date

import pandas as pd
import pytest

from recsys_assets.llm_data.prompts import TEMPLATE, build_prompt, fit_history
from recsys_assets.llm_data.targets import PRESETS, mix_target, quotas, resolve_shares
from recsys_assets.llm_data.tokenization import OPTIONS, round_trips, tokens_per_id, train_id_tokenizer
from resources.splits import split_dates

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
    cold = build_prompt([], 123, None, float("nan"), None, None)
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

"""Shapes of the synthetic marketplace: their repeat shares, baskets and planted structure,
and a default shape that stays exactly what it was for a given seed."""

from __future__ import annotations

import hashlib
from datetime import date

import pandas as pd
import pytest

from recsys_assets.cli import main
from synthetic_marketplace.generator import MarketplaceSpec, generate
from synthetic_marketplace.sampling import SECONDS_PER_DAY
from synthetic_marketplace.shapes import repeat_share

END = date(2026, 6, 30)
# Digest of generate(MarketplaceSpec(users=300, items=200, days=60, end_date=END, seed=11)),
# frozen before the shapes existed: the default shape must keep producing the same data.
DEFAULT_DIGEST = "24750bc7fee43383015eed58d0c36ce930429152ad458e527e2e8728d3f345ae"


def digest(market) -> str:
    h = hashlib.sha256()
    for name in ("users", "items", "purchases", "wishlist", "cart", "truth_users", "truth_items"):
        frame = getattr(market, name)
        h.update(f"{name}:{list(frame.columns)}:{[str(t) for t in frame.dtypes]}".encode())
        h.update(pd.util.hash_pandas_object(frame, index=True).values.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def markets() -> dict[str, tuple[MarketplaceSpec, object]]:
    """Each shape at the generator's default size (it takes well under a second each)."""
    specs = {shape: MarketplaceSpec(end_date=END, shape=shape) for shape in ("default", "grocery", "durable")}
    return {shape: (spec, generate(spec)) for shape, spec in specs.items()}


def test_the_default_shape_is_unchanged_for_a_given_seed():
    spec = MarketplaceSpec(users=300, items=200, days=60, end_date=END, seed=11)
    assert digest(generate(spec)) == DEFAULT_DIGEST
    assert digest(generate(MarketplaceSpec(users=300, items=200, days=60, end_date=END, seed=12))) != DEFAULT_DIGEST


@pytest.mark.parametrize("shape, low, high", [("grocery", 0.6, 1.0), ("default", 0.25, 0.4), ("durable", 0.0, 0.05)])
def test_repeat_share_of_the_test_period_fits_the_shape(markets, shape, low, high):
    spec, market = markets[shape]
    assert low <= repeat_share(market.purchases, spec.days) <= high


def test_repeat_shares_keep_their_order_on_a_small_marketplace():
    small = {"users": 400, "items": 300, "days": 90, "end_date": END, "seed": 3}
    specs = {shape: MarketplaceSpec(**small, shape=shape) for shape in ("grocery", "default", "durable")}
    shares = {shape: repeat_share(generate(spec).purchases, spec.days) for shape, spec in specs.items()}
    assert shares["grocery"] >= 0.6 and shares["durable"] <= 0.05
    assert shares["grocery"] > shares["default"] > shares["durable"]


def test_grocery_staples_are_bought_every_one_to_three_weeks_in_small_baskets(markets):
    spec, market = markets["grocery"]
    purchases, staples = market.purchases, market.truth_extra["staples"]
    assert staples["period_days"].between(7, 21).all()
    bought = purchases.merge(staples, on=["user_id", "item_id"]).sort_values("seconds")
    assert len(bought) / len(purchases) >= 0.6  # staples dominate; the rest explores
    gaps = bought.groupby(["user_id", "item_id"])["seconds"].diff().dropna() / SECONDS_PER_DAY
    assert 5 <= gaps.median() <= 21
    # A trip's items are minutes apart: a user-day is one basket.
    baskets = purchases.groupby([purchases["user_id"], purchases["seconds"] // SECONDS_PER_DAY]).size()
    assert baskets.median() <= 4 and baskets.quantile(0.9) <= 5


def test_durable_purchases_are_rare_single_and_pull_in_complements(markets):
    spec, market = markets["durable"]
    default_purchases = markets["default"][1].purchases
    purchases = market.purchases
    assert len(purchases) / spec.users < 0.6 * len(default_purchases) / spec.users
    pairs = purchases.groupby(["user_id", "item_id"]).size()
    assert (pairs > 1).mean() <= 0.03
    # New purchases of the test period often complete a co-purchase group the user started.
    assert complement_share(market, spec) > complement_share(markets["default"][1], spec) + 0.05


def complement_share(market, spec: MarketplaceSpec) -> float:
    """Share of the test period's first-time purchases whose co-purchase group the user had bought from before."""
    groups = market.purchases.merge(market.truth_items[["item_id", "group_id"]], on="item_id")
    cut = (spec.days - 14) * SECONDS_PER_DAY
    before, test = groups[groups["seconds"] < cut], groups[groups["seconds"] >= cut]
    new = test.merge(before[["user_id", "item_id"]].drop_duplicates(), how="left", indicator=True)
    new = new[new["_merge"] == "left_only"].drop(columns="_merge")
    started = new.merge(before[["user_id", "group_id"]].drop_duplicates(), how="left", indicator=True)
    return float((started["_merge"] == "both").mean())


def test_an_unknown_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown marketplace shape 'furniture': choose one of default, grocery, durable"):
        MarketplaceSpec(shape="furniture")


def test_recsys_generate_writes_the_shape_and_its_truth(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))  # no warehouse: no table listing
    flags = ["--users", "200", "--items", "150", "--days", "45", "--end-date", "2026-06-30", "--seed", "5", "--shape", "grocery"]
    assert main(["generate", *flags, "--out", str(tmp_path / "landing")]) == 0
    assert "Synthetic grocery marketplace" in capsys.readouterr().out
    written = pd.concat(pd.read_parquet(f) for f in sorted((tmp_path / "landing" / "purchases").glob("*.parquet")))
    expected = generate(MarketplaceSpec(users=200, items=150, days=45, end_date=END, seed=5, shape="grocery"))
    assert len(written) == len(expected.purchases)
    staples = pd.read_parquet(tmp_path / "landing" / "_truth" / "staples.parquet")
    assert staples.equals(expected.truth_extra["staples"])


@pytest.mark.parametrize("command", ["generate", "run"])
def test_both_commands_document_the_shape_flag(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--shape {default,grocery,durable}" in help_text and "staples bought every 1-3 weeks" in help_text

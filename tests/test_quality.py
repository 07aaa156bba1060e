"""The LLM's quality guards the suite, and the promotion gate guards serving.

Both run on the ``recsys run`` of tests/conftest.py (400 users with planted structure, the
default settings). The margin is what the default model reaches there less noise: measured
over seeds with ``benchmarks/quality.py``, the LLM's HitRate@10 and NDCG@10 stay well above
1.15x global popularity's. A regression in prompts, tokenizer, training or generation
that takes the LLM down to popularity breaks this test; a model trained on shuffled targets
(tests/quality_drill.py) must fail the same rule, be refused by the gate and leave the
previous model serving, with an alert.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from partitions.user_shards import shard_range
from recsys_assets.evaluation.promotion import CHALLENGER, POPULARITY, decide
from recsys_assets.evaluation.tables import METRICS

PROJECT = Path(__file__).resolve().parents[1]
# The LLM must beat global popularity by this relative margin on HitRate@10 and NDCG@10.
QUALITY_MARGIN = 0.15
GATE_METRICS = ["hit_rate", "ndcg"]


def scores_of_run(main_run, which: str) -> pd.DataFrame:
    """The first (``min``) or newest (``max``) evaluation's scores in marts.recommendation_metrics."""
    rows = main_run.query(f"SELECT model, metric, k, value FROM {METRICS} WHERE evaluated_at = (SELECT {which}(evaluated_at) FROM {METRICS})")
    return pd.DataFrame(rows, columns=["model", "metric", "k", "value"])


def clearly_beats_popularity(scores: pd.DataFrame):
    return decide(scores, GATE_METRICS, k=10, tolerance=-QUALITY_MARGIN, references=[POPULARITY])


def test_the_llm_clearly_beats_global_popularity(main_run):
    verdict = clearly_beats_popularity(scores_of_run(main_run, "min"))
    assert verdict.promote, verdict.reasons


@pytest.fixture(scope="module")
def broken_challenger(main_run) -> dict:
    """A model trained on shuffled target ids, evaluated and gated like any new model."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.quality_drill"], cwd=PROJECT, env=main_run.env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_quality_rule_catches_a_model_trained_on_shuffled_targets(main_run, broken_challenger):
    scores = scores_of_run(main_run, "max")
    assert CHALLENGER in set(scores["model"])
    assert not clearly_beats_popularity(scores).promote


def test_the_gate_keeps_the_previous_model_serving_and_alerts(main_run, broken_challenger):
    drill = broken_challenger
    assert drill["challenger"] != drill["champion_before"]
    assert (drill["decision"], drill["serving_after"]) == ("kept previous", drill["champion_before"])
    assert drill["checks"]["challenger_promoted"] is False
    assert "global_popularity" in drill["reasons"] or "llm_serving" in drill["reasons"]
    # The serving model was re-scored on the same test period, next to the challenger.
    assert "llm_serving" in set(scores_of_run(main_run, "max")["model"])
    # The shard regenerated after the refusal still serves the previous version.
    served = main_run.query(f"SELECT DISTINCT model_version FROM marts.user_recommendations WHERE {shard_range(drill['shard']).sql_filter()}")
    assert drill["shard_success"] and served == [(drill["champion_before"],)]
    alerts = [json.loads(line) for line in (main_run.home / "alerts.log").read_text().splitlines()]
    assert any(a["kind"] == "asset_check" and a["subject"] == "evaluation/model_promotion:challenger_promoted" for a in alerts)

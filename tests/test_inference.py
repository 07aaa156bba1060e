"""Inference engines and chain merging, on a tiny Llama trained for a few seconds.

The model is trained just long enough to emit item ids that are often, not always, in the
catalog: a valid-id rate well inside (0, 1) is what makes "both backends agree" a claim
that a broken sampler would fail (see ``test_the_agreement_check_tells_sampling_settings_apart``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer

from gpu_jobs.generation_files import read_users
from gpu_jobs.inference.backends import (
    CTranslate2Backend,
    TensorRTLLMBackend,
    TensorRTLLMUnavailable,
    backend_by_name,
    exact_compute_type,
    int8_gemm_saturates,
    open_engine,
)
from gpu_jobs.inference.engine import ENGINE_MANIFEST, EngineInfo, Generations, SamplingConfig
from gpu_jobs.inference.merge import MergeCounts, merge_chains
from gpu_jobs.inference.random_model import LlamaShape, random_llama, save_checkpoint
from gpu_jobs.inference.scoring import LikelihoodScorer
from gpu_jobs.prompt_format import ID_SEPARATOR, format_item_ids, generation_prefix, parse_item_ids
from recsys_assets.llm_data.tokenization import train_id_tokenizer

PROJECT = Path(__file__).resolve().parent.parent
# Long enough to learn the shape of an id list, short enough that many ids are still wrong.
TRAINING_STEPS = 40
CHAIN_TOKENS = 48
# One thread: tiny matrices gain nothing from two, and OpenMP threads spin badly when the
# test shares a 2-core machine with other work.
THREADS = 1


@dataclass(frozen=True)
class ToyUser:
    user_id: int
    prompt: str
    target: list[int]
    history: list[int]


@dataclass(frozen=True)
class ToyMarket:
    catalog: list[int]
    users: list[ToyUser]


def toy_market(seed: int = 0, items: int = 40, clusters: int = 8, users: int = 64) -> ToyMarket:
    """Opaque 7-digit ids; the next items of a user are the other items of the clusters of
    the ones they bought (the "similar items" target of the method)."""
    rng = random.Random(seed)
    catalog = rng.sample(range(1_000_000, 10_000_000), items)
    cluster_of = {item: index % clusters for index, item in enumerate(catalog)}
    toy_users = []
    for user_id in rng.sample(range(10**9, 10**10), users):
        history = rng.sample(catalog, 3)
        target = [i for h in history for i in catalog if cluster_of[i] == cluster_of[h] and i not in history]
        prompt = (
            f"Based on the purchase history: [{format_item_ids(history)}]. What next products will be bought by the "
            f"user: {user_id}, geo: {rng.randint(1, 9)}, age: {rng.randint(18, 70)}, gender: {rng.randint(0, 1)}, "
            f"purchasing power: {rng.choice([0.2, 0.5, 0.9])}?"
        )
        toy_users.append(ToyUser(user_id, prompt, target, history))
    return ToyMarket(catalog, toy_users)


def train_briefly(model, tokenizer, market: ToyMarket, steps: int, batch_size: int = 16):
    """Completion-only loss on prompt -> target id list, like the real fine-tuning."""
    torch.manual_seed(0)
    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        sequences, labels = [], []
        for user in rng.sample(market.users, batch_size):
            prefix = tokenizer(generation_prefix(user.prompt))["input_ids"]
            completion = tokenizer(format_item_ids(user.target), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            sequences.append(prefix + completion)
            labels.append([-100] * len(prefix) + completion)
        width = max(map(len, sequences))
        pad = width - torch.tensor([len(s) for s in sequences])
        loss = model(
            input_ids=torch.tensor([s + [tokenizer.pad_token_id] * p for s, p in zip(sequences, pad.tolist())]),
            attention_mask=torch.tensor([[1] * len(s) + [0] * p for s, p in zip(sequences, pad.tolist())]),
            labels=torch.tensor([lab + [-100] * p for lab, p in zip(labels, pad.tolist())]),
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def market() -> ToyMarket:
    return toy_market()


@pytest.fixture(scope="module")
def merged_model(tmp_path_factory, market) -> Path:
    tokenizer = train_id_tokenizer("grouped", [generation_prefix(u.prompt) + format_item_ids(u.target) for u in market.users])
    model = random_llama(tokenizer, LlamaShape(layers=2, hidden=64, intermediate=128, heads=4))
    train_briefly(model, tokenizer, market, TRAINING_STEPS)
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("merged") / "model")


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=PROJECT, capture_output=True, text=True, timeout=300, check=True
    )


@pytest.fixture(scope="module")
def ct2_engine(merged_model, tmp_path_factory) -> tuple[Path, dict]:
    """Built by the standalone job, as the engine asset's GPU job will run it."""
    engine_dir = tmp_path_factory.mktemp("engines") / "ct2"
    result = run_module("gpu_jobs.build_engine", "--model-dir", merged_model, "--backend", "ctranslate2", "--out-dir", engine_dir)
    return engine_dir, json.loads(result.stdout)["metadata"]


def item_stats(generations: Generations, catalog: list[int]) -> tuple[float, Counter]:
    """Valid-id rate and the frequency of each valid item over all chains of all users."""
    counts, frequency = MergeCounts(), Counter()
    for chains in generations.chains:
        counts += merge_chains(chains, catalog).counts
        for chain in chains:
            frequency.update(i for i in parse_item_ids(chain) if i in catalog)
    return counts.valid_id_rate, frequency


def total_variation(a: Counter, b: Counter) -> float:
    a_total, b_total = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / a_total - b[k] / b_total) for k in set(a) | set(b))


@pytest.fixture(scope="module")
def prefixes(market) -> list[str]:
    return [generation_prefix(u.prompt) for u in market.users]


@pytest.fixture(scope="module")
def reference_sample(merged_model, prefixes, market):
    reference = open_engine(merged_model, "transformers", threads=THREADS)
    sampling = SamplingConfig(max_new_tokens=CHAIN_TOKENS, seed=1)
    return item_stats(reference.generate(prefixes, sampling, batch_size=16), market.catalog), reference


# --- engines -----------------------------------------------------------------------------


def test_build_engine_job_records_backend_precision_time_and_size(ct2_engine):
    engine_dir, reported = ct2_engine
    info = EngineInfo.load(engine_dir)
    assert (info.backend, info.precision) == ("ctranslate2", "int8")
    assert info.size_bytes == reported["size_bytes"] > 0
    assert reported["build_seconds"] >= 0 and reported["engine_dir"] == str(engine_dir)
    assert (engine_dir / "tokenizer.json").is_file(), "the engine folder is self-contained"
    assert not any(p.name.endswith(".building") for p in engine_dir.parent.iterdir())


def test_ctranslate2_and_reference_sample_the_same_distribution(ct2_engine, reference_sample, prefixes, market):
    (reference_rate, reference_items), _ = reference_sample
    engine = open_engine(ct2_engine[0], threads=THREADS)
    rate, items = item_stats(engine.generate(prefixes, SamplingConfig(max_new_tokens=CHAIN_TOKENS, seed=1), 16), market.catalog)

    assert 0.1 < reference_rate < 0.9, "the toy model must be neither useless nor perfect for this check to mean anything"
    assert rate == pytest.approx(reference_rate, abs=0.06)
    assert total_variation(items, reference_items) < 0.2


def test_the_agreement_check_tells_sampling_settings_apart(ct2_engine, reference_sample, prefixes, market):
    """Negative control: a hotter sampler must fail the tolerances used above."""
    (reference_rate, reference_items), _ = reference_sample
    engine = open_engine(ct2_engine[0], threads=THREADS)
    hot = SamplingConfig(max_new_tokens=CHAIN_TOKENS, seed=1, temperature=1.5)
    rate, items = item_stats(engine.generate(prefixes, hot, 16), market.catalog)
    assert abs(rate - reference_rate) > 0.06 or total_variation(items, reference_items) > 0.2


def test_each_prompt_gets_its_chains_and_a_seed_fixes_them(ct2_engine, prefixes):
    engine = open_engine(ct2_engine[0], threads=THREADS)
    sampling = SamplingConfig(chains=3, max_new_tokens=8, seed=7)
    first = engine.generate(prefixes[:5], sampling, batch_size=2)
    assert [len(chains) for chains in first.chains] == [3] * 5
    assert engine.generate(prefixes[:5], sampling, batch_size=2) == first


def model_that_always_stops(tokenizer):
    """Zeroed attention and MLP outputs leave each position with its token's embedding; every
    token embeds to ones and the end token to fives, so (tied output layer) the end token's
    logit is five times any other's: free generation stops at once."""
    model = random_llama(tokenizer, LlamaShape(layers=1, hidden=32, intermediate=64, heads=2))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.model.embed_tokens.weight[tokenizer.eos_token_id] = 5.0
    return model


def test_min_new_tokens_forces_equal_work_on_both_backends(merged_model, prefixes, tmp_path):
    """The benchmark relies on this: both backends generate exactly the requested tokens."""
    tokenizer = AutoTokenizer.from_pretrained(merged_model)
    checkpoint = save_checkpoint(model_that_always_stops(tokenizer), tokenizer, tmp_path / "stops")
    CTranslate2Backend.prepare(checkpoint, tmp_path / "stops-ct2")
    free = SamplingConfig(chains=2, max_new_tokens=CHAIN_TOKENS, seed=3)
    forced = SamplingConfig(chains=2, max_new_tokens=CHAIN_TOKENS, min_new_tokens=CHAIN_TOKENS, seed=3)
    for backend in (open_engine(tmp_path / "stops-ct2", threads=THREADS), open_engine(checkpoint, "transformers", threads=THREADS)):
        assert backend.generate(prefixes[:3], free, batch_size=3).generated_tokens == 0
        assert backend.generate(prefixes[:3], forced, batch_size=3).generated_tokens == 3 * 2 * CHAIN_TOKENS


@pytest.mark.parametrize(
    ("vendor", "flags", "machine", "saturates"),
    [
        ("AuthenticAMD", "sse4_1 avx2 fma", "x86_64", True),  # oneDNN without VNNI
        ("AuthenticAMD", "avx2 avx512f avx512_vnni", "x86_64", False),
        ("AuthenticAMD", "avx2 avx_vnni", "x86_64", False),
        ("GenuineIntel", "avx2 fma", "x86_64", False),  # MKL
        ("", "", "aarch64", False),  # ruy
    ],
)
def test_int8_falls_back_to_float32_only_where_the_cpu_saturates_it(vendor, flags, machine, saturates):
    cpuinfo = f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: avx512_vnni\n"
    assert int8_gemm_saturates(cpuinfo, machine) is saturates
    assert exact_compute_type("int8", saturates) == ("float32" if saturates else "int8")
    assert exact_compute_type("float32", True) == "float32"


def test_a_loaded_engine_reports_what_it_computes_in(ct2_engine):
    engine = open_engine(ct2_engine[0], threads=THREADS)
    assert engine.precision == exact_compute_type("int8", int8_gemm_saturates())


def test_open_engine_needs_a_manifest_or_a_named_backend(merged_model, ct2_engine):
    with pytest.raises(FileNotFoundError, match="build_engine"):
        open_engine(merged_model)
    with pytest.raises(ValueError, match="ctranslate2 engine"):
        open_engine(ct2_engine[0], "transformers")
    with pytest.raises(ValueError, match="Unknown inference backend"):
        backend_by_name("onnx")


# --- TensorRT-LLM, up to the GPU boundary -------------------------------------------------


def test_tensorrt_llm_rejects_opt_before_touching_the_gpu(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "opt"}))
    with pytest.raises(ValueError, match="Llama-architecture"):
        TensorRTLLMBackend.prepare(tmp_path, tmp_path / "engine")


def test_tensorrt_llm_missing_gives_a_clear_error(merged_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # what a CPU machine without the package sees
    with pytest.raises(TensorRTLLMUnavailable, match="--backend ctranslate2"):
        TensorRTLLMBackend.prepare(merged_model, tmp_path / "engine")


# The constructor fields of tensorrt_llm.SamplingParams (tensorrt_llm/sampling_params.py of the
# 1.x releases): the stand-in refuses any other keyword, so a field renamed upstream fails here
# and not on a GPU node.
SAMPLING_PARAMS_FIELDS = frozenset({
    "end_id", "pad_id", "max_tokens", "bad", "bad_token_ids", "stop", "stop_token_ids", "include_stop_str_in_output",
    "embedding_bias", "logits_processor", "apply_batched_logits_processor", "n", "best_of", "use_beam_search", "top_k",
    "top_p", "top_p_min", "top_p_reset_ids", "top_p_decay", "seed", "temperature", "min_tokens",
    "beam_search_diversity_rate", "repetition_penalty", "presence_penalty", "frequency_penalty", "length_penalty",
    "early_stopping", "no_repeat_ngram_size", "min_p", "beam_width_array", "logprobs", "prompt_logprobs",
    "return_context_logits", "return_generation_logits", "exclude_input_from_output", "return_encoder_output",
    "return_perf_metrics", "additional_model_outputs", "lookahead_config", "guided_decoding", "ignore_eos", "detokenize",
    "add_special_tokens", "truncate_prompt_tokens", "skip_special_tokens", "spaces_between_special_tokens",
})  # fmt: skip


class FakeSamplingParams(types.SimpleNamespace):
    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - SAMPLING_PARAMS_FIELDS)
        if unknown:
            raise TypeError(f"SamplingParams.__init__() got unexpected keyword arguments {unknown}")
        super().__init__(**kwargs)


class FakeLLM:
    """Stands in for tensorrt_llm.LLM (GPU only): records calls, answers like the LLM API."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, **kwargs):
        FakeLLM.calls.append(("init", kwargs))

    def generate(self, prompts, params):
        FakeLLM.calls.append(("generate", {"prompts": prompts, "params": params}))
        completion = types.SimpleNamespace
        return [types.SimpleNamespace(outputs=[completion(text=f"{p}#{k}", token_ids=[k] * k) for k in range(params.n)]) for p in prompts]

    def shutdown(self):
        FakeLLM.calls.append(("shutdown", {}))


def test_tensorrt_llm_call_path(merged_model, tmp_path, monkeypatch):
    fake = types.ModuleType("tensorrt_llm")
    fake.LLM, fake.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "tensorrt_llm", fake)
    FakeLLM.calls.clear()

    info = TensorRTLLMBackend.prepare(merged_model, tmp_path / "engine", "bfloat16")
    assert (info.backend, info.precision) == ("tensorrt-llm", "bfloat16")
    assert (tmp_path / "engine" / "config.json").is_file() and (tmp_path / "engine" / ENGINE_MANIFEST).is_file()
    assert FakeLLM.calls[0] == ("init", {"model": str(tmp_path / "engine"), "dtype": "bfloat16"})

    engine = open_engine(tmp_path / "engine")
    # Served with the C++ sampler, which honours each request's seed.
    assert FakeLLM.calls[-1] == ("init", {"model": str(tmp_path / "engine"), "dtype": "bfloat16", "sampler_type": "TRTLLMSampler"})
    generations = engine.generate(["a: ", "b: "], SamplingConfig(seed=5), batch_size=8)
    assert generations.chains == [[f"a: #{k}" for k in range(4)], [f"b: #{k}" for k in range(4)]]
    assert generations.generated_tokens == 2 * (0 + 1 + 2 + 3)
    params = FakeLLM.calls[-1][1]["params"]
    assert vars(params) == {
        "n": 4, "top_k": 50, "top_p": 0.9, "temperature": 0.7, "max_tokens": 310, "min_tokens": 0, "seed": 5
    }  # fmt: skip
    with pytest.raises(TypeError, match="sampling_topk"):
        FakeSamplingParams(sampling_topk=50)  # CTranslate2's name: the stand-in knows the real fields


# --- merging -----------------------------------------------------------------------------


def test_merge_ranks_by_chain_agreement_then_first_position():
    chains = ["5, 3, 9, 11", "3, 7", "3, 5, 5", "8"]
    merged = merge_chains(chains, catalog={3, 5, 7, 8, 9})
    assert [(i.item_id, i.rank, i.chains_with_item) for i in merged.items] == [
        (3, 1, 3),  # three chains
        (5, 2, 2),  # two chains; repeated within the third chain, counted once
        (8, 3, 1),  # one chain each, by earliest position: 8 at 0, 7 at 1, 9 at 2
        (7, 4, 1),
        (9, 5, 1),
    ]
    assert [i.score for i in merged.items] == [0.75, 0.5, 0.25, 0.25, 0.25]
    assert merged.counts == MergeCounts(generated_ids=10, valid_ids=9, excluded_bought=0, unique_items=5)
    assert merged.counts.invalid_ids == 1 and merged.counts.valid_id_rate == 0.9


def test_merge_excludes_bought_items_unless_told_otherwise():
    chains = ["1, 2, 3", "2, 4"]
    excluded = merge_chains(chains, catalog={1, 2, 3, 4}, bought={2})
    assert [i.item_id for i in excluded.items] == [1, 4, 3]  # 4 came at position 1, 3 at 2
    assert excluded.counts.excluded_bought == 2
    kept = merge_chains(chains, catalog={1, 2, 3, 4}, bought={2}, exclude_bought=False)
    assert [i.item_id for i in kept.items] == [2, 1, 4, 3]


def test_merge_keeps_the_top_items_and_survives_empty_chains():
    assert [i.item_id for i in merge_chains(["1, 2, 3"], catalog={1, 2, 3}, max_items=2).items] == [1, 2]
    empty = merge_chains(["", "no ids here"], catalog={1})
    assert empty.items == [] and empty.counts.valid_id_rate == 0.0


# --- the standalone generate job ----------------------------------------------------------


def write_generation_inputs(market, folder: Path, users: int = 12) -> tuple[list, set]:
    users = market.users[:users]
    pq.write_table(pa.table({"user_id": [u.user_id for u in users], "prompt": [u.prompt for u in users]}), folder / "prompts.parquet")
    pq.write_table(pa.table({"item_id": market.catalog}), folder / "catalog.parquet")
    bought = [(u.user_id, item) for u in users for item in u.history]
    pq.write_table(pa.table({"user_id": [b[0] for b in bought], "item_id": [b[1] for b in bought]}), folder / "bought.parquet")
    return users, set(bought)


def generate_job(engine_dir: Path, folder: Path, *extra):
    output = folder / "out" / "recommendations.parquet"
    result = run_module(
        "gpu_jobs.generate",
        "--engine-dir", engine_dir,
        "--prompts", folder / "prompts.parquet",
        "--catalog", folder / "catalog.parquet",
        "--bought", folder / "bought.parquet",
        "--output", output,
        "--max-new-tokens", CHAIN_TOKENS,
        "--batch-size", 4,
        "--report-every", 1,
        "--seed", 11,
        "--threads", THREADS,
        *extra,
    )  # fmt: skip
    return pq.read_table(output).to_pandas(), json.loads(result.stdout)["metadata"], result, output


def test_generate_job_writes_ranked_recommendations(ct2_engine, market, tmp_path):
    users, bought = write_generation_inputs(market, tmp_path)
    table, metadata, result, output = generate_job(ct2_engine[0], tmp_path, "--ranking", "chains")

    assert list(table.columns) == ["user_id", "rank", "item_id", "score", "chains_with_item", "chain_rank", "source"]
    assert metadata["rows"] == len(table) > 0 and metadata["users"] == len(users)
    assert set(table.item_id) <= set(market.catalog), "ids outside the catalog are dropped"
    assert not set(zip(table.user_id, table.item_id)) & bought, "already-bought items are excluded"
    assert 0 < metadata["valid_id_rate"] < 1 and metadata["invalid_ids_dropped"] > 0
    assert set(table.source) == {"generated"} and (table["rank"] == table["chain_rank"]).all()
    for _, recs in table.groupby("user_id"):
        assert list(recs["rank"]) == list(range(1, len(recs) + 1))
        assert recs.item_id.is_unique
        assert list(recs.chains_with_item) == sorted(recs.chains_with_item, reverse=True)
        assert (recs.score == recs.chains_with_item / 4).all()
    assert "4/12 users" in result.stderr, "progress is logged per chunk"
    assert not list(output.parent.glob(".*partial")), "no partial file is left behind"


def test_likelihood_ranking_fills_the_list_from_the_pool_in_the_models_order(ct2_engine, merged_model, market, tmp_path):
    users, bought = write_generation_inputs(market, tmp_path, users=6)
    # Every catalog item in the pool of every user, half from each of two named sources.
    pool = [(u.user_id, item, "popular" if item % 2 else "similar") for u in users for item in market.catalog]
    pq.write_table(pa.table(dict(zip(["user_id", "item_id", "source"], map(list, zip(*pool))))), tmp_path / "pool.parquet")
    max_items = 25
    table, metadata, _, _ = generate_job(
        ct2_engine[0], tmp_path, "--candidates", tmp_path / "pool.parquet", "--max-items", max_items, "--include-bought"
    )

    assert metadata["ranking"] == "likelihood" and metadata["mean_items_per_user"] == max_items, "lists are full"
    assert set(table.item_id) <= set(market.catalog)
    assert set(table.source) <= {"generated", "popular", "similar"} and "generated" in set(table.source)
    assert (table["chain_rank"].notna() == (table["source"] == "generated")).all()
    assert sum(json.loads(json.dumps(metadata["items_by_source"])).values()) == len(table)
    scorer = LikelihoodScorer(merged_model, threads=THREADS)
    for user in users:
        recs = table[table.user_id == user.user_id]
        assert list(recs["rank"]) == list(range(1, max_items + 1)) and recs.item_id.is_unique
        assert list(recs.score) == sorted(recs.score, reverse=True)
        # The list is the model's own ranking of every catalog item: the top of scoring them all.
        scores = scorer.score(generation_prefix(user.prompt), list(market.catalog))
        best = [market.catalog[i] for i in np.argsort(-scores, kind="stable")[:max_items]]
        assert set(recs.item_id) == set(best)
        assert np.allclose(recs.score, np.sort(scores)[::-1][:max_items], atol=1e-4)


def test_likelihood_scores_match_scoring_each_full_sequence(merged_model, market):
    """The shared prompt cache gives the same numbers as scoring prompt + id one by one."""
    scorer = LikelihoodScorer(merged_model, threads=THREADS)
    tokenizer, model = scorer.tokenizer, scorer.model
    prefix = generation_prefix(market.users[0].prompt)
    items = list(market.catalog[:20])
    prompt = tokenizer(prefix)["input_ids"]
    ends = [tokenizer(ID_SEPARATOR, add_special_tokens=False)["input_ids"][0], tokenizer.eos_token_id]
    expected = []
    for item in items:
        tokens = tokenizer(str(item), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(torch.tensor([prompt + tokens])).logits[0], dim=-1)
        value = sum(logprobs[len(prompt) - 1 + j, t].item() for j, t in enumerate(tokens))
        expected.append(value + torch.logsumexp(logprobs[len(prompt) - 1 + len(tokens), ends], dim=0).item())
    assert np.allclose(scorer.score(prefix, items), expected, atol=1e-4)


def test_generate_job_rejects_bad_prompt_files_clearly(tmp_path):
    pq.write_table(pa.table({"user_id": [1], "text": ["x"]}), tmp_path / "renamed.parquet")
    with pytest.raises(ValueError, match=r"missing column\(s\) prompt \(found: user_id, text\)"):
        read_users(tmp_path / "renamed.parquet")
    pq.write_table(pa.table({"user_id": [1, 1], "prompt": ["x", "y"]}), tmp_path / "twice.parquet")
    with pytest.raises(ValueError, match="one prompt per user"):
        read_users(tmp_path / "twice.parquet")

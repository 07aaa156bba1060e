"""LLM data layer: the id tokenizer and the prompt dataset, versioned in the artifact store (the layer's third
asset, the candidate pool's item models, is in pool_item_models.py)."""

import hashlib
import json
import time
from collections.abc import Iterable
from datetime import date

import dagster as dg
import pandas as pd

from gpu_jobs.model_folder import publish
from gpu_jobs.prompt_format import format_item_ids, generation_prefix
from recsys_assets.keys import FCT_PURCHASES, ID_TOKENIZER, ITEM_FEATURES, PROMPT_DATASET
from recsys_assets.llm_data.checks import DatasetChecks, dataset_check_specs, round_trip_check, tokenizer_check_specs
from recsys_assets.llm_data.dataset import SPLITS, Builder, DatasetSpec, MarketData
from recsys_assets.llm_data.dataset_files import DatasetSummary, SplitFiles
from recsys_assets.llm_data.history import histories_before
from recsys_assets.llm_data.pool_item_models import pool_item_models
from recsys_assets.llm_data.prompts import build_prompt
from recsys_assets.llm_data.targets import ranked_lists, resolve_shares
from recsys_assets.llm_data.token_lengths import TokenLengths
from recsys_assets.llm_data.tokenization import OPTIONS, comparison_frame, length_report, train_id_tokenizer
from recsys_assets.metadata import duration, frame_table
from resources.artifacts import ArtifactStore, latest_artifact
from resources.splits import EvaluationSplit
from resources.warehouse import Warehouse

OWNERS = ["team:ml"]
FEATURE_DEPS = [
    FCT_PURCHASES,
    dg.AssetKey(["staging", "stg_wishlist"]),
    dg.AssetKey(["staging", "stg_cart"]),
    dg.AssetKey(["features", "user_features"]),
    ITEM_FEATURES,
]
CANDIDATE_DEPS = [
    dg.AssetKey(["candidates", "similar_items"]),
    dg.AssetKey(["candidates", "similar_users"]),
    dg.AssetKey(["candidates", "user_cluster_candidates"]),
]


class IdTokenizerConfig(dg.Config):
    option: str = "bpe"
    """Which tokenizer the model uses: digits (one token per digit), grouped, or bpe (trained on the id corpus)."""
    digit_group: int = 3
    """Digits per token for the grouped option."""
    bpe_vocab_size: int = 8000
    """Vocabulary size of the trained BPE tokenizer."""
    history_max_items: int = 50
    """Ids per prompt in the length comparison (as in the prompt dataset)."""
    target_items: int = 20
    """Ids per target in the length comparison (as in the prompt dataset)."""
    corpus_users: int = 50_000
    """Users whose prompts the tokenizers learn from and are compared on: a seeded sample past this many (0: every
    user), so the layer's time stops growing with the marketplace. Every catalog id is still checked to round-trip."""


class PromptDatasetConfig(dg.Config):
    target_strategy: str = "next_purchases"
    """Target mix preset: next_purchases (default: what the prompt asks and the metrics score), or the reference
    system's own, similar_users, similar_items, clusters, combined, or next_purchases_similar_items."""
    target_shares: dict[str, float] = {}
    """Explicit shares per source (overrides the preset), e.g. {"own_cart": 0.5, "interest_clusters": 0.5}."""
    target_items: int = 20
    """Items per target."""
    history_max_items: int = 50
    """Most purchase ids per prompt, newest first (the token budget may keep fewer)."""
    max_seq_len: int = 310
    """Prompt + target must fit this many tokens of the id tokenizer."""
    intent_days: int = 182
    """How long a wishlist/cart addition counts as open intent."""
    train_windows: int = 6
    """Training cut-offs: the training cut-off and the windows before it, one example per user and window
    (about 10 weeks of next purchases to learn from at the default 14-day windows)."""
    window_days: int = 14
    """Days between training cut-offs, and the next_purchases window (as long as the val/test periods)."""
    train_users: int = 125_000
    """Users with training examples: past this many, a sample stratified by purchase count (cold-start, light and
    heavy buyers all present), so training time stops growing with the marketplace. 0: every user."""
    seed: int = 0
    """Seed of the training sample."""

    def spec(self, strategy: str | None = None) -> DatasetSpec:
        """The builder's settings; ``strategy`` overrides the configured target mix."""
        shares = resolve_shares(strategy) if strategy else resolve_shares(self.target_strategy, self.target_shares or None)
        return DatasetSpec(
            shares, self.target_items, self.history_max_items, self.max_seq_len, self.intent_days, self.train_windows,
            self.window_days, self.train_users, self.seed,
        )  # fmt: skip


def _version(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _read(conn, sql: str) -> pd.DataFrame:
    return conn.execute(sql).df()


def _user_prompts_and_targets(conn, cutoff: date, history_max: int, target_items: int, corpus_users: int):
    """Corpus for the tokenizer: the prompt before the cut-off of every user (of a seeded sample of
    ``corpus_users``), and for the length comparison, (prompt, target) pairs that hold out each
    buyer's newest purchases as target."""
    users = _read(conn, "SELECT user_id, geo, age, gender, purchasing_power FROM features.user_features ORDER BY user_id")
    if corpus_users and len(users) > corpus_users:
        # Plus one user per distinct attribute value, so that every word a prompt can hold is in the vocabulary.
        each_value = pd.concat([users.drop_duplicates(column) for column in ("geo", "age", "gender")])
        sampled = pd.concat([users.sample(n=corpus_users, random_state=0), each_value])
        users = sampled.drop_duplicates("user_id").sort_values("user_id")
    conn.register("corpus_users", users[["user_id"]])
    purchases = _read(
        conn, f"SELECT user_id, item_id, ts FROM staging.fct_purchases SEMI JOIN corpus_users USING (user_id) WHERE ts < DATE '{cutoff}'"
    )
    conn.unregister("corpus_users")
    histories = histories_before(purchases, cutoff, history_max + target_items)
    prompts, pairs = [], []
    for user in users.itertuples(index=False):
        history = histories.get(user.user_id, [])
        attributes = (user.user_id, user.geo, user.age, user.gender, user.purchasing_power)
        # As the model sees it: the prompt and the separator its answer follows.
        prompts.append(generation_prefix(build_prompt(history[:history_max], *attributes)))
        held_out = min(target_items, len(history) // 2)
        if held_out:
            prompt = generation_prefix(build_prompt(history[held_out : held_out + history_max], *attributes))
            pairs.append((prompt, format_item_ids(history[:held_out])))
    return prompts, pairs, purchases["item_id"].unique().tolist()


@dg.asset(
    key=ID_TOKENIZER,
    group_name="llm_data",
    owners=OWNERS,
    kinds={"huggingface", "python"},
    deps=FEATURE_DEPS,
    check_specs=tokenizer_check_specs(ID_TOKENIZER),
    description=(
        "Tokenizer for prompts and item ids (digits / grouped digits / BPE trained on the id corpus before the "
        "training cut-off). Metadata compares tokens per id and prompt/target lengths of all options side by side."
    ),
)
def id_tokenizer(
    context: dg.AssetExecutionContext, config: IdTokenizerConfig, warehouse: Warehouse, artifacts: ArtifactStore, splits: EvaluationSplit
) -> dg.MaterializeResult:
    started = time.perf_counter()
    with warehouse.get_connection() as conn:
        cutoff = splits.dates(conn).train_cutoff
        prompts, pairs, corpus_ids = _user_prompts_and_targets(
            conn, cutoff, config.history_max_items, config.target_items, config.corpus_users
        )
        catalog = [i for (i,) in conn.execute("SELECT item_id FROM staging.stg_items").fetchall()]
    corpus = prompts + [target for _, target in pairs]
    context.log.info(
        f"Training tokenizers on {len(corpus)} texts of {len(prompts)} users, {len(corpus_ids)} distinct purchased ids (before {cutoff})"
    )

    tokenizers, reports = {}, []
    for option in OPTIONS:
        tokenizers[option] = train_id_tokenizer(option, corpus, group=config.digit_group, bpe_vocab_size=config.bpe_vocab_size)
        reports.append(length_report(option, tokenizers[option], corpus_ids, [p for p, _ in pairs], [t for _, t in pairs]))
    chosen = tokenizers[config.option]
    round_trip = round_trip_check(chosen, catalog)

    version = _version(config.model_dump(), cutoff, _version(corpus))
    path = artifacts.path("tokenizers", version, "tokenizer.json").parent
    chosen.save_pretrained(str(path))
    (path / "comparison.json").write_text(json.dumps([r.__dict__ for r in reports], indent=2))
    chosen_report = next(r for r in reports if r.option == config.option)
    return dg.MaterializeResult(
        metadata={
            "tokenizer_version": version,
            "path": str(path),
            "option": config.option,
            "vocab_size": len(chosen),
            "tokens_per_id": round(chosen_report.tokens_per_id, 3),
            "comparison": frame_table(comparison_frame(reports)),
            "training_cutoff": str(cutoff),
            "corpus_users": len(prompts),
            "duration": duration(time.perf_counter() - started),
        },
        check_results=[round_trip],
    )


# Which candidate tables a target source reads: at 1M users the similar-users and cluster lists are
# tens of millions of ids, loaded only for a mix that uses them.
_CANDIDATES_OF_SOURCE = {
    "similar_users_intent": "similar_users",
    "similar_to_wishlist": "similar_items",
    "similar_to_cart": "similar_items",
    "interest_clusters": "cluster_candidates",
}


def load_market_data(conn, sources: Iterable[str] | None = None) -> MarketData:
    """The warehouse tables the prompt dataset reads; candidate lists only for ``sources`` (None: all)."""
    wanted = set(_CANDIDATES_OF_SOURCE.values()) if sources is None else {_CANDIDATES_OF_SOURCE.get(s) for s in sources}

    def ranked(field: str, table: str, key: str, value: str) -> dict:
        if field not in wanted:
            return {}
        return ranked_lists(_read(conn, f"SELECT {key}, rank, {value} FROM candidates.{table}"), key, value)

    return MarketData(
        purchases=_read(conn, "SELECT user_id, item_id, ts FROM staging.fct_purchases"),
        wishlist=_read(conn, "SELECT user_id, item_id, ts FROM staging.stg_wishlist"),
        cart=_read(conn, "SELECT user_id, item_id, ts FROM staging.stg_cart"),
        users=_read(conn, "SELECT user_id, gender, age, geo FROM staging.stg_users"),
        price_percentile=dict(conn.execute("SELECT item_id, price_percentile FROM features.item_features").fetchall()),
        similar_items=ranked("similar_items", "similar_items", "item_id", "neighbour_item_id"),
        similar_users=ranked("similar_users", "similar_users", "user_id", "neighbour_user_id"),
        cluster_candidates=ranked("cluster_candidates", "user_cluster_candidates", "user_id", "item_id"),
    )


def _dataset_metadata(summary: DatasetSummary, spec: DatasetSpec, fitted_text_by_text: int) -> dict:
    return {
        **{f"rows_{split}": summary.rows[split] for split in SPLITS},
        "dagster/row_count": sum(summary.rows.values()),
        "configured_shares": dg.MetadataValue.json(spec.shares),
        "train_cutoffs": dg.MetadataValue.json(sorted(summary.train_cutoffs)),
        "realized_shares_train": dg.MetadataValue.json(summary.realized_shares),
        "train_examples_with_complete_mix": summary.train_mix_complete,
        "cold_start_prompts": summary.cold_start_prompts,
        "train_users": len(summary.train_users),
        "serve_users": summary.rows["serve"],
        "mean_prompt_tokens": summary.mean_prompt_tokens,
        "mean_target_tokens_train": summary.mean_train_target_tokens,
        "max_total_tokens": summary.longest,
        "max_seq_len": spec.max_seq_len,
        # Lengths are sums of the ids' and the frame's tokens, confirmed whole; these did not add up and were refitted.
        "examples_fitted_text_by_text": fitted_text_by_text,
        **({"preview": frame_table(summary.preview)} if summary.preview is not None else {}),
    }


@dg.asset(
    key=PROMPT_DATASET,
    check_specs=dataset_check_specs(PROMPT_DATASET),
    group_name="llm_data",
    owners=OWNERS,
    kinds={"parquet", "python"},
    deps=[ID_TOKENIZER, *FEATURE_DEPS, *CANDIDATE_DEPS],
    description=(
        "One example per user and split (train / val / test / serve) in the method's prompt template; train targets "
        "mix the configured sources, val/test targets are the next purchases after the cut-off. Versioned Parquet "
        "in the artifact store."
    ),
)
def prompt_dataset(
    context: dg.AssetExecutionContext, config: PromptDatasetConfig, warehouse: Warehouse, artifacts: ArtifactStore, splits: EvaluationSplit
) -> dg.MaterializeResult:
    from transformers import PreTrainedTokenizerFast

    started = time.perf_counter()
    spec = config.spec()
    tokenizer_path = latest_artifact(context.instance, ID_TOKENIZER)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_path))
    with warehouse.get_connection() as conn:
        dates = splits.dates(conn)
        data = load_market_data(conn, spec.shares)
    context.log.info(f"Building prompts: train before {dates.val_start}, val {dates.val_start}.., test {dates.test_start}..{dates.end}")

    builder = Builder(data, spec, dates, TokenLengths.of_tokenizer(tokenizer))
    checks = DatasetChecks(data.purchases, dates, spec.max_seq_len)
    summary = DatasetSummary()
    # Written under a staging name and swapped in whole: a killed run leaves no half-written version.
    staging = artifacts.folder("datasets", f".building-{context.run_id}")
    with SplitFiles(staging) as files:
        for chunk in builder.chunks():
            files.write(chunk)
            summary.add(chunk)
            checks.add(chunk, builder.serve_target_tokens)
            if len(chunk):
                context.log.info(
                    f"{chunk['split'].iloc[0]} cut-off {chunk['cutoff'].iloc[0]}: users up to {chunk['user_id'].iloc[-1]}, "
                    f"{sum(summary.rows.values()):,} examples in {time.perf_counter() - started:.0f} s"
                )
    version = _version(config.model_dump(), str(tokenizer_path), dates.__dict__, files.content_hash)
    folder = artifacts.path("datasets", version)
    manifest = {
        "dataset_version": version,
        "config": config.model_dump(),
        "shares": spec.shares,
        "tokenizer_path": str(tokenizer_path),
        "split_dates": {k: str(v) for k, v in dates.__dict__.items()},
        "rows": {split: summary.rows[split] for split in SPLITS},
        "serve_target_tokens": builder.serve_target_tokens,
    }
    (staging / "dataset.json").write_text(json.dumps(manifest, indent=2))
    publish(staging, folder)
    return dg.MaterializeResult(
        metadata={
            "dataset_version": version,
            "path": str(folder),
            "tokenizer_path": str(tokenizer_path),
            "split_dates": dg.MetadataValue.json(manifest["split_dates"]),
            "duration": duration(time.perf_counter() - started),
            **_dataset_metadata(summary, spec, builder.recounted),
        },
        check_results=checks.results(),
    )


llm_data_assets = [id_tokenizer, prompt_dataset, pool_item_models]

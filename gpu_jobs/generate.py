"""Generate recommendations for a set of users with an inference engine (a GPU job).

    python -m gpu_jobs.generate --engine-dir ENGINE --prompts prompts.parquet \\
        --catalog items.parquet [--bought purchases.parquet] [--candidates pool.parquet] --output recs.parquet

Reads prompts (``user_id, prompt``), samples ``--chains`` chains per user and merges them into
unique catalog items (``gpu_jobs.inference.merge``). With ``--ranking likelihood`` (the
default) the model then scores every generated item and every item of the user's candidate
pool (``--candidates``: ``user_id, item_id, source``, e.g. the user's own purchases and
co-purchased items) by its likelihood after the prompt (``gpu_jobs.inference.scoring``) and
the list is that ranking, so it can be as long as ``--max-items`` even when the chains are
short; ``--ranking chains`` keeps the chains' agreement order. Writes ``user_id, rank,
item_id, score, chains_with_item, chain_rank, source`` to ``--output`` atomically (a complete
file or none); ``source`` says whether an item was generated or which pool brought it.
Under dagster-pipes it streams progress logs and reports the materialization metadata; run
by hand it logs to stderr and prints the metadata as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from dagster_pipes import PipesContext

from gpu_jobs.inference.backends import BACKENDS, open_engine
from gpu_jobs.inference.engine import EngineInfo, GenerationBackend, SamplingConfig
from gpu_jobs.inference.merge import MergeCounts, MergedRecommendations, merge_chains
from gpu_jobs.inference.scoring import LikelihoodScorer
from gpu_jobs.job_context import ConsoleContext, job_context
from gpu_jobs.prompt_format import generation_prefix

OUTPUT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("rank", pa.int32()),
        ("item_id", pa.int64()),
        ("score", pa.float64()),  # log-likelihood (likelihood ranking) or share of chains (chains ranking)
        ("chains_with_item", pa.int32()),
        ("chain_rank", pa.int32()),  # the item's rank by chain agreement; null when only the pool brought it
        ("source", pa.string()),  # "generated", or the candidate pool's source name
    ]
)
GENERATED = "generated"
RANKINGS = ("likelihood", "chains")


@dataclass(frozen=True)
class Users:
    user_ids: list[int]
    prompts: list[str]


@dataclass
class Progress:
    users: int = 0
    users_without_items: int = 0
    generated_tokens: int = 0
    counts: MergeCounts = dataclasses.field(default_factory=MergeCounts)
    items_by_source: dict[str, int] = dataclasses.field(default_factory=dict)
    scoring_seconds: float = 0.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = SamplingConfig()
    parser = argparse.ArgumentParser(prog="python -m gpu_jobs.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-dir", type=Path, required=True, help="engine folder from gpu_jobs.build_engine")
    parser.add_argument(
        "--backend", choices=sorted(BACKENDS), help="default: the engine's manifest; name it to use a plain HF checkpoint folder"
    )
    parser.add_argument("--prompts", type=Path, required=True, help="parquet with columns user_id, prompt")
    parser.add_argument("--catalog", type=Path, required=True, help="parquet with column item_id: the ids that may be recommended")
    parser.add_argument("--bought", type=Path, help="parquet with columns user_id, item_id: items each user already bought")
    parser.add_argument("--include-bought", action="store_true", help="keep already-bought items (default: exclude them)")
    parser.add_argument("--candidates", type=Path, help="parquet with columns user_id, item_id, source: each user's candidate pool to rank")
    parser.add_argument(
        "--ranking", choices=RANKINGS, default="likelihood",
        help="likelihood: the model scores generated and pool items (default); chains: agreement between the chains only",
    )  # fmt: skip
    parser.add_argument("--scoring-model", type=Path, help="HF checkpoint that scores items (default: the engine's source model)")
    parser.add_argument("--output", type=Path, required=True, help="parquet to write: " + ", ".join(OUTPUT_SCHEMA.names))
    parser.add_argument("--chains", type=int, default=defaults.chains, help="independent sampled chains per user")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help="maximum tokens per chain")
    parser.add_argument(
        "--min-new-tokens", type=int, default=defaults.min_new_tokens, help="tokens per chain before the end token is allowed (longer lists)"
    )
    parser.add_argument("--seed", type=int, help="fixes the sampling (reproducible runs)")
    parser.add_argument("--max-items", type=int, help="keep the top N merged items per user (default: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="users per forward batch")
    parser.add_argument("--report-every", type=int, default=8, help="batches between progress logs")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores available)")
    return parser.parse_args(argv)


def sampling_from(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig(
        chains=args.chains,
        top_p=args.top_p,
        top_k=args.top_k,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        seed=args.seed,
    )


def read_columns(path: Path, columns: list[str]) -> pa.Table:
    present = pq.read_schema(path).names
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(present)})")
    return pq.read_table(path, columns=columns)


def read_users(path: Path) -> Users:
    table = read_columns(path, ["user_id", "prompt"])
    user_ids = table.column("user_id").to_pylist()
    prompts = table.column("prompt").to_pylist()
    if len(set(user_ids)) != len(user_ids):
        raise ValueError(f"{path}: user_id must be unique, one prompt per user")
    if None in user_ids or None in prompts:
        raise ValueError(f"{path}: user_id and prompt must not be null")
    # Similar prompt lengths in one batch: the shared prefill covers the batch's shortest
    # prompt, every further prompt token is decoded once per chain.
    order = sorted(range(len(user_ids)), key=lambda i: len(prompts[i]))
    return Users([user_ids[i] for i in order], [prompts[i] for i in order])


def read_catalog(path: Path) -> frozenset[int]:
    return frozenset(read_columns(path, ["item_id"]).column("item_id").to_pylist())


def read_bought(path: Path | None) -> dict[int, set[int]]:
    bought: dict[int, set[int]] = {}
    if path is None:
        return bought
    table = read_columns(path, ["user_id", "item_id"])
    for user_id, item_id in zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist()):
        bought.setdefault(user_id, set()).add(item_id)
    return bought


def read_candidates(path: Path | None) -> dict[int, dict[int, str]]:
    """Per user: pool item -> the first source that brought it (file order)."""
    pools: dict[int, dict[int, str]] = {}
    if path is None:
        return pools
    table = read_columns(path, ["user_id", "item_id", "source"])
    for user_id, item_id, source in zip(*(table.column(c).to_pylist() for c in ("user_id", "item_id", "source"))):
        pools.setdefault(user_id, {}).setdefault(item_id, source)
    return pools


def scoring_model_dir(args: argparse.Namespace) -> Path:
    return args.scoring_model or Path(EngineInfo.load(args.engine_dir).source_model)


def pool_items(merged: MergedRecommendations, pool: dict[int, str], catalog: frozenset[int], bought: Collection[int], exclude_bought: bool):
    """Generated items first (their source and chain rank kept), then the pool's other catalog items."""
    items = {item.item_id: (item, GENERATED) for item in merged.items}
    for item_id, source in pool.items():
        if item_id not in items and item_id in catalog and not (exclude_bought and item_id in bought):
            items[item_id] = (None, source)
    return items


def ranked_by_likelihood(scorer: LikelihoodScorer, prefix: str, items: dict, max_items: int | None) -> list[tuple]:
    """(item_id, score, chains_with_item, chain_rank, source) by the model's log-likelihood, best first."""
    item_ids = list(items)
    scores = scorer.score(prefix, item_ids)
    order = sorted(range(len(item_ids)), key=lambda i: (-scores[i], item_ids[i]))[:max_items]
    rows = []
    for index in order:
        generated, source = items[item_ids[index]]
        chains = generated.chains_with_item if generated else 0
        rows.append((item_ids[index], float(scores[index]), chains, generated.rank if generated else None, source))
    return rows


def chunks(users: Users, size: int) -> Iterator[tuple[int, Users]]:
    for index, start in enumerate(range(0, len(users.user_ids), size)):
        yield index, Users(users.user_ids[start : start + size], users.prompts[start : start + size])


def chunk_sampling(sampling: SamplingConfig, chunk_index: int) -> SamplingConfig:
    """A seeded run stays reproducible without replaying one random stream for every chunk."""
    return sampling if sampling.seed is None else dataclasses.replace(sampling, seed=sampling.seed + chunk_index)


def generate_recommendations(
    backend: GenerationBackend,
    scorer: LikelihoodScorer | None,
    users: Users,
    catalog: frozenset[int],
    bought: dict[int, set[int]],
    pools: dict[int, dict[int, str]],
    args: argparse.Namespace,
    context: PipesContext | ConsoleContext,
) -> tuple[dict[str, list], Progress]:
    sampling = sampling_from(args)
    columns: dict[str, list] = {name: [] for name in OUTPUT_SCHEMA.names}
    progress = Progress()
    started = time.perf_counter()
    for index, chunk in chunks(users, args.batch_size * args.report_every):
        prefixes = [generation_prefix(p) for p in chunk.prompts]
        generations = backend.generate(prefixes, chunk_sampling(sampling, index), args.batch_size)
        progress.generated_tokens += generations.generated_tokens
        for user_id, prefix, chains in zip(chunk.user_ids, prefixes, generations.chains):
            user_bought = bought.get(user_id, ())
            # The likelihood ranking looks at every generated item; the chains ranking cuts at max_items.
            merged = merge_chains(
                chains, catalog, user_bought, exclude_bought=not args.include_bought, max_items=None if scorer else args.max_items
            )
            if scorer is None:
                rows = [(item.item_id, item.score, item.chains_with_item, item.rank, GENERATED) for item in merged.items]
            else:
                scoring_started = time.perf_counter()
                items = pool_items(merged, pools.get(user_id, {}), catalog, user_bought, not args.include_bought)
                rows = ranked_by_likelihood(scorer, prefix, items, args.max_items)
                progress.scoring_seconds += time.perf_counter() - scoring_started
            for rank, row in enumerate(rows, start=1):
                for name, value in zip(OUTPUT_SCHEMA.names, (user_id, rank, *row)):
                    columns[name].append(value)
                progress.items_by_source[row[-1]] = progress.items_by_source.get(row[-1], 0) + 1
            progress.counts += merged.counts
            progress.users_without_items += not rows
        progress.users += len(chunk.user_ids)
        elapsed = time.perf_counter() - started
        context.log.info(
            f"{progress.users}/{len(users.user_ids)} users, {progress.users / elapsed:.2f} users/s, "
            f"valid-id rate {progress.counts.valid_id_rate:.3f}"
        )
    return columns, progress


def write_atomically(columns: dict[str, list], path: Path) -> None:
    """Write next to the target and rename: readers see the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    pq.write_table(pa.table(columns, schema=OUTPUT_SCHEMA), partial)
    os.replace(partial, path)


def run(args: argparse.Namespace, context: PipesContext | ConsoleContext) -> dict:
    users = read_users(args.prompts)
    catalog = read_catalog(args.catalog)
    bought = read_bought(args.bought)
    pools = read_candidates(args.candidates)
    context.log.info(f"{len(users.user_ids)} users, {len(catalog)} catalog items; loading engine {args.engine_dir}")
    backend = open_engine(args.engine_dir, args.backend, threads=args.threads)
    scorer = LikelihoodScorer(scoring_model_dir(args), threads=args.threads) if args.ranking == "likelihood" else None
    started = time.perf_counter()
    columns, progress = generate_recommendations(backend, scorer, users, catalog, bought, pools, args, context)
    seconds = time.perf_counter() - started
    write_atomically(columns, args.output)
    counts = progress.counts
    rows = len(columns["user_id"])
    metadata = {
        "backend": backend.name,
        "engine_dir": str(args.engine_dir),
        "ranking": args.ranking,
        "users": progress.users,
        "rows": rows,
        "users_without_recommendations": progress.users_without_items,
        "mean_items_per_user": round(rows / progress.users, 2) if progress.users else 0.0,
        "mean_generated_items_per_user": round(counts.unique_items / progress.users, 2) if progress.users else 0.0,
        "items_by_source": {"raw_value": progress.items_by_source, "type": "json"},
        "scoring_seconds": round(progress.scoring_seconds, 2),
        "generated_ids": counts.generated_ids,
        "valid_ids": counts.valid_ids,
        "invalid_ids_dropped": counts.invalid_ids,
        "valid_id_rate": round(counts.valid_id_rate, 4),
        "bought_items_excluded": counts.excluded_bought,
        "generation_seconds": round(seconds, 2),
        "users_per_second": round(progress.users / seconds, 3) if seconds else 0.0,
        "generated_tokens": progress.generated_tokens,
        "generated_tokens_per_second": round(progress.generated_tokens / seconds, 1) if seconds else 0.0,
        "sampling": {"raw_value": dataclasses.asdict(sampling_from(args)), "type": "json"},  # pipes takes nested values as json
        "output": str(args.output),
    }
    context.report_asset_materialization(metadata=metadata)
    return metadata


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with job_context() as context:
        run(args, context)


if __name__ == "__main__":
    main()

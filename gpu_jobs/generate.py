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
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dagster_pipes import PipesContext

from gpu_jobs.generation_files import (
    OUTPUT_SCHEMA,
    Users,
    read_bought,
    read_candidates,
    read_catalog,
    read_users,
    write_atomically,
)
from gpu_jobs.inference.backends import BACKENDS, open_engine
from gpu_jobs.inference.engine import EngineInfo, GenerationBackend, SamplingConfig
from gpu_jobs.inference.merge import MergeCounts, merge_chains
from gpu_jobs.inference.pool_ranking import GENERATED, pool_items, ranked_by_likelihood
from gpu_jobs.inference.scoring import LikelihoodScorer
from gpu_jobs.job_context import ConsoleContext, job_context
from gpu_jobs.prompt_format import generation_prefix

RANKINGS = ("likelihood", "chains")


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


def scoring_model_dir(args: argparse.Namespace) -> Path:
    return args.scoring_model or Path(EngineInfo.load(args.engine_dir).source_model)


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
        "precision": backend.precision,
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

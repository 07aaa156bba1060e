"""Prepare an inference engine from the merged fine-tuned model (a GPU job for GPU backends).

    python -m gpu_jobs.build_engine --model-dir MERGED --backend ctranslate2 --out-dir ENGINE

ctranslate2 converts the checkpoint (int8 by default), transformers re-saves it in the
chosen precision, tensorrt-llm validates it on the GPU and keeps the checkpoint as the
engine. The engine folder gets ``engine.json``; the backend, precision, build seconds and
size on disk are reported through dagster-pipes, or printed as JSON when run by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

from dagster_pipes import PipesContext

from gpu_jobs.inference.backends import BACKENDS, backend_by_name
from gpu_jobs.job_context import ConsoleContext, job_context


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpu_jobs.build_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="merged Hugging Face checkpoint (weights, config, tokenizer)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="ctranslate2")
    parser.add_argument("--out-dir", type=Path, required=True, help="engine folder to write (replaced if it exists)")
    parser.add_argument(
        "--precision",
        help="; ".join(f"{name}: {', '.join(b.precisions)} (default {b.precisions[0]})" for name, b in BACKENDS.items()),
    )
    return parser.parse_args(argv)


def replace_directory(staging: Path, target: Path) -> None:
    """Swap a finished build in: a failed build never leaves a half-written engine behind."""
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def run(args: argparse.Namespace, context: PipesContext | ConsoleContext) -> dict:
    backend = backend_by_name(args.backend)
    staging = args.out_dir.with_name(f".{args.out_dir.name}.building")
    if staging.exists():
        shutil.rmtree(staging)  # left by a build that crashed
    staging.parent.mkdir(parents=True, exist_ok=True)
    context.log.info(f"preparing a {backend.name} engine from {args.model_dir} into {args.out_dir}")
    info = backend.prepare(args.model_dir, staging, args.precision)
    replace_directory(staging, args.out_dir)
    metadata = {**dataclasses.asdict(info), "engine_dir": str(args.out_dir), "size_mb": round(info.size_bytes / 2**20, 2)}
    context.report_asset_materialization(metadata=metadata)
    return metadata


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with job_context() as context:
        run(args, context)


if __name__ == "__main__":
    main()

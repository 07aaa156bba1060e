"""Fine-tune the recommender LM with LoRA: prompt dataset + id tokenizer in, versioned model out.

    python -m gpu_jobs.train --dataset datasets/<version> --tokenizer tokenizers/<version> [--epochs 3 ...]

Reads ``datasets/<v>/{train,val}.parquet`` and ``tokenizers/<v>/`` from the artifact store and
writes ``models/<model_version>/`` (adapter/, merged/, tokenizer/, training_config.json,
metrics.json, loss_curve.png). Under Dagster (the ``model/fine_tuned_model`` asset) progress
and the materialization go back through dagster-pipes; from a shell they go to the console.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from gpu_jobs.encoding import encode, read_split
from gpu_jobs.job_context import job_context
from gpu_jobs.model_folder import fresh_staging, loss_curve_png, publish, write_metrics, write_model, write_training_config
from gpu_jobs.modeling import base_model, parameter_counts, with_lora
from gpu_jobs.train_config import TrainingConfig, model_version
from gpu_jobs.train_report import materialization_metadata, training_record
from gpu_jobs.training_loop import fit, seed_everything


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gpu_jobs.train", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="prompt dataset folder: datasets/<version> in the artifact store, or absolute")
    parser.add_argument("--tokenizer", required=True, help="id tokenizer folder: tokenizers/<version> in the artifact store, or absolute")
    parser.add_argument(
        "--artifacts-root",
        default=None,
        help="artifact store root (default: $RECSYS_ARTIFACTS_ROOT, else $RECSYS_HOME/artifacts, else ./data/artifacts)",
    )
    TrainingConfig.add_arguments(parser)
    return parser.parse_args(argv)


def artifacts_root(explicit: str | None) -> Path:
    # Resolved here rather than through resources.settings: a GPU image carries gpu_jobs
    # without the orchestrator's resources (and their dbt/duckdb imports).
    if explicit:
        return Path(explicit)
    if "RECSYS_ARTIFACTS_ROOT" in os.environ:
        return Path(os.environ["RECSYS_ARTIFACTS_ROOT"])
    home = os.environ.get("RECSYS_HOME", Path(__file__).resolve().parent.parent / "data")
    return Path(home) / "artifacts"


def run(context, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    config = TrainingConfig.from_namespace(args)
    root = artifacts_root(args.artifacts_root)
    dataset_dir, tokenizer_dir = root / args.dataset, root / args.tokenizer
    version = model_version(config, dataset_dir.name, tokenizer_dir.name)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    context.log.info(f"model {version}: {config.base_model} on {dataset_dir} with {tokenizer_dir}, device {device}")
    if torch.cuda.device_count() > 1:  # a small model trains on one GPU; more are for sharded generation
        context.log.warning(f"{torch.cuda.device_count()} GPUs visible, training uses one")
    seed_everything(config.seed)

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # labels are built explicitly, so eos stays learnable
    train = encode(read_split(dataset_dir, "train"), tokenizer, config.max_length)
    val = encode(read_split(dataset_dir, "val").head(config.val_examples), tokenizer, config.max_length)
    for name, examples in (("train", train), ("val", val)):
        if examples.truncated or examples.skipped:
            context.log.warning(
                f"{name}: {examples.truncated} completions cut and {examples.skipped} examples skipped at max_length {config.max_length}"
            )

    model, train_embeddings = base_model(config, tokenizer)
    params_total, _ = parameter_counts(model)
    model = with_lora(model, config, train_embeddings).to(device)
    _, params_trainable = parameter_counts(model)
    context.log.info(f"{params_total:,} parameters, {params_trainable:,} trainable; {len(train.input_ids)} train examples")

    history = fit(model, train, val, config, tokenizer.pad_token_id, device, context.log)

    final = root / "models" / version
    staging = fresh_staging(final)
    params = (params_total, params_trainable, train_embeddings)
    record = training_record(version, config, dataset_dir, tokenizer_dir, device, params, train, val, history)
    write_model(staging, model, tokenizer)
    loss_curve_png(history, staging / "loss_curve.png")
    write_training_config(staging, config, version, args.dataset, args.tokenizer)
    record["wall_time_s"] = time.perf_counter() - started
    write_metrics(staging, record)
    publish(staging, final)
    context.log.info(f"wrote {final}: val loss {record['val_loss_start']:.4f} -> {record['val_loss_end']:.4f}")
    context.report_asset_materialization(metadata=materialization_metadata(record, final), data_version=version)
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with job_context() as context:
        run(context, args)


if __name__ == "__main__":
    main()

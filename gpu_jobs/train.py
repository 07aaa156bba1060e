"""Fine-tune the recommender LM with LoRA: prompt dataset + id tokenizer in, versioned model out.

    python -m gpu_jobs.train --dataset datasets/<version> --tokenizer tokenizers/<version> [--epochs 3 ...]

Reads ``datasets/<v>/{train,val}.parquet`` and ``tokenizers/<v>/`` from the artifact store and
writes ``models/<model_version>/`` (adapter/, merged/, tokenizer/, training_config.json,
metrics.json, loss_curve.png). Under Dagster (the ``model/fine_tuned_model`` asset) progress
and the materialization go back through dagster-pipes; from a shell they go to the console.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gpu_jobs.job_context import job_context
from gpu_jobs.modeling import base_model, parameter_counts, with_lora
from gpu_jobs.prompt_format import training_text
from gpu_jobs.train_config import TrainingConfig, model_version

IGNORE = -100  # label of tokens that get no loss (the prompt, the padding)
LOG_EVERY = 10


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


# ---------------------------------------------------------------- data


@dataclass
class Examples:
    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: int = 0  # completions cut at max_length (they lose their tail and eos)
    skipped: int = 0  # prompts that alone fill max_length: nothing left to learn from

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def read_split(dataset_dir: Path, split: str) -> pd.DataFrame:
    path = dataset_dir / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the prompt dataset must have train.parquet and val.parquet")
    frame = pd.read_parquet(path)
    missing = {"prompt", "target"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}; found {list(frame.columns)}")
    return frame


def encode(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Examples:
    """Token ids with labels only on the completion (target + eos), never on the prompt.

    The prefix is tokenized on its own, with the tokenizer's special tokens, exactly as
    generation will tokenize ``generation_prefix(prompt)``; so the model learns to continue the
    same ids it is given at inference.
    """
    examples = Examples([], [])
    for prompt, target in zip(frame["prompt"], frame["target"]):
        prefix, completion = training_text(prompt, target)
        prefix_ids = tokenizer(prefix)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(prefix_ids) >= max_length:
            examples.skipped += 1
            continue
        ids = (prefix_ids + completion_ids)[:max_length]
        examples.truncated += len(prefix_ids) + len(completion_ids) > max_length
        examples.input_ids.append(ids)
        examples.labels.append([IGNORE] * len(prefix_ids) + ids[len(prefix_ids) :])
    return examples


def batches(examples: Examples, size: int, pad_id: int, order: list[int]):
    """Right-padded batches in the given order; padding gets no attention and no loss."""
    for start in range(0, len(order), size):
        chosen = order[start : start + size]
        width = max(len(examples.input_ids[i]) for i in chosen)
        ids = torch.full((len(chosen), width), pad_id)
        labels = torch.full((len(chosen), width), IGNORE)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, i in enumerate(chosen):
            n = len(examples.input_ids[i])
            ids[row, :n] = torch.tensor(examples.input_ids[i])
            labels[row, :n] = torch.tensor(examples.labels[i])
            mask[row, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------- training


@dataclass
class History:
    train: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss)
    val: list[tuple[int, float]] = field(default_factory=list)  # (step, loss over the val examples)
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision compute dtype, or None for plain fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None  # CPU autocast is slower than fp32 on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def move(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in batch.items()}


def target_tokens(batch: dict) -> int:
    # The model shifts labels by one: the first position is never predicted.
    return int((batch["labels"][:, 1:] != IGNORE).sum())


@torch.no_grad()
def evaluate(model, examples: Examples, config: TrainingConfig, pad_id: int, device, dtype) -> float:
    """Mean loss per target token over the validation examples."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches(examples, config.batch_size, pad_id, list(range(len(examples.input_ids)))):
        batch = move(batch, device)
        with _autocast(device, dtype):
            loss = model(**batch).loss
        n = target_tokens(batch)
        total, count = total + float(loss) * n, count + n
    model.train()
    return total / count


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """LR factor: linear warmup, then cosine down to 10% of the peak."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def fit(model, train: Examples, val: Examples, config: TrainingConfig, pad_id: int, device, log) -> History:
    dtype = autocast_dtype(config.precision, device)
    steps_per_epoch = math.ceil(len(train.input_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.warmup_ratio))
    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    shuffler = torch.Generator().manual_seed(config.seed)
    history = History()
    history.val.append((0, evaluate(model, val, config, pad_id, device, dtype)))
    log.info(f"{total_steps} steps ({steps_per_epoch}/epoch), val loss before training {history.val[0][1]:.4f}")
    model.train()
    while history.steps < total_steps:
        order = torch.randperm(len(train.input_ids), generator=shuffler).tolist()
        for batch in batches(train, config.batch_size, pad_id, order):
            started = time.perf_counter()
            batch = move(batch, device)
            with _autocast(device, dtype):
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            loss_value = loss.item()  # waits for the device, so the step time below is real on GPUs
            history.train_seconds += time.perf_counter() - started
            history.tokens += int(batch["attention_mask"].sum())
            history.steps += 1
            history.train.append((history.steps, loss_value))
            report_progress(model, history, total_steps, val, config, pad_id, device, dtype, log)
            if history.steps == total_steps:
                break
    return history


def report_progress(model, history: History, total_steps: int, val, config, pad_id, device, dtype, log) -> None:
    step = history.steps
    if step % config.eval_every == 0 or step == total_steps:
        history.val.append((step, evaluate(model, val, config, pad_id, device, dtype)))
    if step % LOG_EVERY == 0 or step == total_steps:
        recent = [loss for _, loss in history.train[-LOG_EVERY:]]
        log.info(
            f"step {step}/{total_steps} train loss {sum(recent) / len(recent):.4f} "
            f"val loss {history.val[-1][1]:.4f} (at step {history.val[-1][0]}) "
            f"{history.tokens / history.train_seconds:.0f} tokens/s"
        )


# ---------------------------------------------------------------- outputs


def loss_curve_png(history: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on GPU nodes or CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(*zip(*history.train), color="tab:blue", alpha=0.35, linewidth=1, label="train (batch)")
    axes.plot(*zip(*history.val), color="tab:orange", marker="o", label="validation")
    axes.set_xlabel("step")
    axes.set_ylabel("loss per target token")
    axes.set_title("Fine-tuning loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_model(staging: Path, model, tokenizer: PreTrainedTokenizerBase) -> None:
    model.save_pretrained(staging / "adapter")
    merged = model.merge_and_unload()  # plain transformers model: what inference converts and serves
    merged.save_pretrained(staging / "merged")
    # The merged folder is self-contained (CTranslate2's converter reads the tokenizer beside it).
    tokenizer.save_pretrained(staging / "merged")
    tokenizer.save_pretrained(staging / "tokenizer")


def publish(staging: Path, final: Path) -> None:
    """Swap the finished folder in; a crash before this leaves no half-written model version."""
    if final.exists():  # the same version means the same inputs: a re-run replaces it
        shutil.rmtree(final)
    staging.rename(final)


def metadata(record: dict, final: Path) -> dict:
    """Materialization metadata in pipes form; ``path`` as the orchestrator sees the store."""
    png = (final / "loss_curve.png").read_bytes()
    # Embedded, so the plot shows in the Dagster UI without access to the artifact volume.
    image = f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})"
    scalars = {k: v for k, v in record.items() if not isinstance(v, (list, dict))}
    return {
        **scalars,
        "path": {"raw_value": str(final), "type": "path"},
        "val_loss_curve": {"raw_value": {str(step): loss for step, loss in record["val_loss_curve"]}, "type": "json"},
        "loss_curve": {"raw_value": image, "type": "md"},
        "loss_curve_png": {"raw_value": str(final / "loss_curve.png"), "type": "path"},
    }


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
    staging = final.with_name(f".{version}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    record = {
        "model_version": version,
        "base_model": config.base_model,
        "dataset_version": dataset_dir.name,
        "tokenizer_version": tokenizer_dir.name,
        "device": str(device),
        "precision": str(autocast_dtype(config.precision, device) or torch.float32).removeprefix("torch."),
        "params_total": params_total,
        "params_trainable": params_trainable,
        "embeddings_trained": train_embeddings,
        "train_examples": len(train.input_ids),
        "val_examples": len(val.input_ids),
        "truncated_examples": train.truncated + val.truncated,
        "skipped_examples": train.skipped + val.skipped,
        "steps": history.steps,
        "val_loss_start": history.val[0][1],
        "val_loss_end": history.val[-1][1],
        "val_loss_best": min(loss for _, loss in history.val),
        "train_loss_end": float(np.mean([loss for _, loss in history.train[-LOG_EVERY:]])),
        "train_tokens": history.tokens,
        "tokens_per_s": history.tokens / history.train_seconds,
        "train_seconds": history.train_seconds,
        "train_loss_curve": history.train,
        "val_loss_curve": history.val,
    }
    write_model(staging, model, tokenizer)
    loss_curve_png(history, staging / "loss_curve.png")
    (staging / "training_config.json").write_text(
        json.dumps(
            {
                **asdict(config),
                "model_version": version,
                "dataset": args.dataset,
                "tokenizer": args.tokenizer,
                # How generation must build its input to match training.
                "text_format": "tokenizer(generation_prefix(prompt)) -> completion 'id, id, ...' + eos",
            },
            indent=2,
        )
    )
    record["wall_time_s"] = time.perf_counter() - started
    (staging / "metrics.json").write_text(json.dumps(record, indent=2))
    publish(staging, final)
    context.log.info(f"wrote {final}: val loss {record['val_loss_start']:.4f} -> {record['val_loss_end']:.4f}")
    context.report_asset_materialization(metadata=metadata(record, final), data_version=version)
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with job_context() as context:
        run(context, args)


if __name__ == "__main__":
    main()

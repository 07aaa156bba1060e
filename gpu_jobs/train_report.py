"""What a fine-tuning run reports: its metrics record (metrics.json) and, from it, the materialization metadata."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import torch

from gpu_jobs.encoding import Examples
from gpu_jobs.train_config import TrainingConfig
from gpu_jobs.training_loop import LOG_EVERY, History, autocast_dtype


def training_record(
    version: str,
    config: TrainingConfig,
    dataset_dir: Path,
    tokenizer_dir: Path,
    device: torch.device,
    params: tuple[int, int, bool],
    train: Examples,
    val: Examples,
    history: History,
) -> dict:
    """``params``: (total, trainable, whether the embeddings trained)."""
    params_total, params_trainable, embeddings_trained = params
    return {
        "model_version": version,
        "base_model": config.base_model,
        "dataset_version": dataset_dir.name,
        "tokenizer_version": tokenizer_dir.name,
        "device": str(device),
        "precision": str(autocast_dtype(config.precision, device) or torch.float32).removeprefix("torch."),
        "params_total": params_total,
        "params_trainable": params_trainable,
        "embeddings_trained": embeddings_trained,
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


def materialization_metadata(record: dict, final: Path) -> dict:
    """The record in pipes form; ``path`` as this job sees the store (the asset maps it to the orchestrator's)."""
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

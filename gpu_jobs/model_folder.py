"""What a fine-tuning run leaves in ``models/<model_version>/``, built in a staging folder and swapped in whole.

adapter/ (the LoRA weights), merged/ (a plain checkpoint with its tokenizer), tokenizer/,
training_config.json, metrics.json and loss_curve.png.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from gpu_jobs.train_config import TrainingConfig
from gpu_jobs.training_loop import History


def fresh_staging(final: Path) -> Path:
    """A per-process folder beside ``final``; what a crashed run left there is cleared first."""
    staging = final.with_name(f".{final.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def write_model(staging: Path, model, tokenizer: PreTrainedTokenizerBase) -> None:
    model.save_pretrained(staging / "adapter")
    merged = model.merge_and_unload()  # plain transformers model: what inference converts and serves
    merged.save_pretrained(staging / "merged")
    # The merged folder is self-contained (CTranslate2's converter reads the tokenizer beside it).
    tokenizer.save_pretrained(staging / "merged")
    tokenizer.save_pretrained(staging / "tokenizer")


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


def write_training_config(staging: Path, config: TrainingConfig, version: str, dataset: str, tokenizer: str) -> None:
    settings = {
        **asdict(config),
        "model_version": version,
        "dataset": dataset,
        "tokenizer": tokenizer,
        # How generation must build its input to match training.
        "text_format": "tokenizer(generation_prefix(prompt)) -> completion 'id, id, ...' + eos",
    }
    (staging / "training_config.json").write_text(json.dumps(settings, indent=2))


def write_metrics(staging: Path, record: dict) -> None:
    (staging / "metrics.json").write_text(json.dumps(record, indent=2))


def publish(staging: Path, final: Path) -> None:
    """Swap the finished folder in; a crash before this leaves no half-written model version."""
    if final.exists():  # the same version means the same inputs: a re-run replaces it
        shutil.rmtree(final)
    staging.rename(final)

"""What a fine-tuning run is: its settings, their command line, and the model version they define.

Kept free of torch so the orchestrator can import it when it loads the code location; the
training itself (gpu_jobs.train and the modules it imports) needs torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, fields

TINY_LLAMA = "tiny-llama"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LLAMA_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Bump when a change to the training code changes what the same inputs produce, so the model
# version moves with it.
TRAINING_CODE_VERSION = 2  # 2: the tiny Llama has 2 x max_length positions


def setting(default, doc: str):
    """A TrainingConfig field with its description (the launchpad shows it for the asset's config)."""
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one fine-tuning run. Every field is also a flag of `python -m gpu_jobs.train`."""

    base_model: str = setting(TINY_LLAMA, '"tiny-llama" (a small Llama built from the tiny_* dims), or a local path / hub id of a causal LM.')
    tiny_hidden_size: int = setting(128, "tiny-llama: width of the hidden states.")
    tiny_layers: int = setting(2, "tiny-llama: decoder layers.")
    tiny_heads: int = setting(4, "tiny-llama: attention heads (as many key/value heads).")
    tiny_intermediate_size: int = setting(512, "tiny-llama: width of the MLP.")
    keep_layers: int = setting(0, "Cut a pretrained decoder to its first N layers (the reference cut OPT-125M to 4); 0 keeps all.")
    lora_r: int = setting(8, "Rank of the LoRA adapters.")
    lora_alpha: int = setting(16, "LoRA scaling: the adapters' update is scaled by lora_alpha / lora_r.")
    lora_dropout: float = setting(0.05, "Dropout on the LoRA adapters' input.")
    lora_target_modules: tuple[str, ...] = setting(
        LLAMA_LINEAR_MODULES, 'Module names that get LoRA adapters (Llama/Qwen names by default), or ["all-linear"].'
    )
    epochs: int = setting(2, "Passes over the training examples.")
    max_steps: int = setting(0, "Stop after this many optimizer steps; 0 lets epochs decide.")
    learning_rate: float = setting(2e-3, "Peak learning rate of AdamW (linear warmup, then cosine down to 10% of it).")
    warmup_ratio: float = setting(0.05, "Share of the steps spent warming the learning rate up.")
    batch_size: int = setting(32, "Examples per optimizer step.")
    max_length: int = setting(310, "Longest training sequence in tokens (prompt + target + eos), as in the reference system.")
    eval_every: int = setting(100, "Steps between validation passes (also run before the first and after the last step).")
    val_examples: int = setting(512, "Validation examples scored per pass (the first N of val.parquet).")
    precision: str = setting("auto", "auto (bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU), fp32, bf16 or fp16.")
    seed: int = setting(0, "Seeds the tiny model's initial weights, the example order and dropout.")

    def __post_init__(self) -> None:
        # Fail at the start of a run, not after hours of training.
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if not self.lora_target_modules:
            raise ValueError("lora_target_modules is empty: name the modules that get LoRA adapters, or all-linear")

    def to_args(self) -> list[str]:
        args = []
        for field in fields(self):
            value = getattr(self, field.name)
            flag = "--" + field.name.replace("_", "-")
            args += [flag, *value] if isinstance(value, tuple) else [flag, str(value)]
        return args

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        defaults = cls()
        for field in fields(cls):
            default = getattr(defaults, field.name)
            flag = "--" + field.name.replace("_", "-")
            if isinstance(default, tuple):
                parser.add_argument(flag, nargs="+", default=list(default), dest=field.name)
            else:
                parser.add_argument(flag, type=type(default), default=default, dest=field.name)

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainingConfig:
        values = {field.name: getattr(namespace, field.name) for field in fields(cls)}
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
        return cls(**values)


def model_version(config: TrainingConfig, dataset_version: str, tokenizer_version: str) -> str:
    """Same data + same settings + same training code -> same version (and the same folder)."""
    identity = {
        "dataset": dataset_version,
        "tokenizer": tokenizer_version,
        "config": asdict(config),
        "code": TRAINING_CODE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"ft-{digest[:12]}"

"""What a fine-tuning run is: its settings, their command line, and the model version they define.

Kept free of torch so the orchestrator can import it when it loads the code location; the
training itself lives in gpu_jobs.train.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, fields

TINY_LLAMA = "tiny-llama"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LLAMA_LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Bump when a change to the training code changes what the same inputs produce, so the model
# version moves with it.
TRAINING_CODE_VERSION = 2  # 2: the tiny Llama has 2 x max_length positions


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one fine-tuning run. Every field is also a flag of `python -m gpu_jobs.train`."""

    base_model: str = TINY_LLAMA  # "tiny-llama" (built from the tiny_* dims) or a local path / hub id
    tiny_hidden_size: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_intermediate_size: int = 512
    keep_layers: int = 0  # cut a pretrained decoder to its first N layers (the reference: OPT-125M to 4); 0 keeps all
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = LLAMA_LINEAR_MODULES  # or ("all-linear",)
    epochs: int = 2
    max_steps: int = 0  # stop after this many optimizer steps; 0 lets epochs decide
    learning_rate: float = 2e-3
    warmup_ratio: float = 0.05
    batch_size: int = 32
    max_length: int = 310
    eval_every: int = 100  # steps between validation passes (also run before the first and after the last step)
    val_examples: int = 512  # validation examples scored per pass (the first N of val.parquet)
    precision: str = "auto"  # auto: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU
    seed: int = 0

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

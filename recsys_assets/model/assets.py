"""Model layer: LoRA fine-tuning of the decoder-only recommender as a GPU job.

The asset only decides *what* to train (inputs, settings); gpu_jobs/train.py trains, and the
``gpu_jobs`` resource decides *where*: a local subprocess or a Kubernetes GPU pod. The job
reports its materialization (model version, path, losses, throughput) back through pipes.
"""

import os
from dataclasses import fields
from pathlib import Path

import dagster as dg

from gpu_jobs.train_config import TINY_LLAMA, TRAINING_CODE_VERSION, TrainingConfig
from recsys_assets.metadata import duration, rounded
from resources.artifacts import latest_artifact
from resources.gpu_jobs import GpuJobRunner

PROMPT_DATASET = dg.AssetKey(["llm_data", "prompt_dataset"])
ID_TOKENIZER = dg.AssetKey(["llm_data", "id_tokenizer"])
FINE_TUNED_MODEL = dg.AssetKey(["model", "fine_tuned_model"])
# Llama architecture, because TensorRT-LLM's PyTorch backend serves Llama and not OPT;
# 135M parameters, near the reference system's 125M OPT.
PRODUCTION_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M"
BASE_MODEL_ENV = "RECSYS_BASE_MODEL"
_DEFAULT = TrainingConfig()


class FineTuneConfig(dg.Config):
    base_model: str = ""
    """"tiny-llama" (a small Llama built from the tiny_* dims), or a local path / hub id of a causal LM.
    Empty: $RECSYS_BASE_MODEL, else tiny-llama for local GPU jobs and SmolLM2-135M (Llama) on Kubernetes."""
    tiny_hidden_size: int = _DEFAULT.tiny_hidden_size
    tiny_layers: int = _DEFAULT.tiny_layers
    tiny_heads: int = _DEFAULT.tiny_heads
    tiny_intermediate_size: int = _DEFAULT.tiny_intermediate_size
    keep_layers: int = _DEFAULT.keep_layers
    """Cut a pretrained decoder to its first N layers (the reference cut OPT-125M to 4); 0 keeps all."""
    lora_r: int = _DEFAULT.lora_r
    lora_alpha: int = _DEFAULT.lora_alpha
    lora_dropout: float = _DEFAULT.lora_dropout
    lora_target_modules: list[str] = list(_DEFAULT.lora_target_modules)
    """Module names that get LoRA adapters (Llama/Qwen names by default), or ["all-linear"]."""
    epochs: int = _DEFAULT.epochs
    max_steps: int = _DEFAULT.max_steps
    """Stop after this many optimizer steps; 0 lets epochs decide."""
    learning_rate: float = _DEFAULT.learning_rate
    warmup_ratio: float = _DEFAULT.warmup_ratio
    batch_size: int = _DEFAULT.batch_size
    max_length: int = _DEFAULT.max_length
    """Longest training sequence in tokens (prompt + target + eos), as in the reference system."""
    eval_every: int = _DEFAULT.eval_every
    val_examples: int = _DEFAULT.val_examples
    precision: str = _DEFAULT.precision
    """auto (bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU), fp32, bf16 or fp16."""
    seed: int = _DEFAULT.seed
    gpu_count: int = 0
    """GPUs for the training pod in Kubernetes mode; 0: the train step's gpu_count in deploy/gpu-steps.yaml."""
    dataset_path: str = ""
    """Train on this prompt dataset folder instead of the latest llm_data/prompt_dataset."""
    tokenizer_path: str = ""
    """Use this tokenizer folder instead of the latest llm_data/id_tokenizer."""

    def training(self, gpu_mode: str) -> TrainingConfig:
        values = self.model_dump(include={field.name for field in fields(TrainingConfig)})
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
        values["base_model"] = self.base_model or default_base_model(gpu_mode)
        return TrainingConfig(**values)


def default_base_model(gpu_mode: str) -> str:
    if BASE_MODEL_ENV in os.environ:
        return os.environ[BASE_MODEL_ENV]
    return PRODUCTION_BASE_MODEL if gpu_mode == "kubernetes" else TINY_LLAMA


# The settings a person compares between two models, shown as a table on the model's page.
HYPERPARAMETERS = ("base_model", "learning_rate", "warmup_ratio", "lora_r", "lora_alpha", "lora_dropout", "batch_size",
                   "epochs", "max_steps", "max_length", "precision", "seed")  # fmt: skip


def hyperparameter_table(training: TrainingConfig) -> dg.TableMetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn("setting", "string"), dg.TableColumn("value", "string")])
    rows = [dg.TableRecord({"setting": name, "value": str(getattr(training, name))}) for name in HYPERPARAMETERS]
    return dg.MetadataValue.table(rows, schema=schema)


def input_folder(explicit: str, upstream: dg.AssetKey, context: dg.AssetExecutionContext) -> Path:
    """The folder a job reads: the one named in the config, else the upstream's latest."""
    return Path(explicit) if explicit else latest_artifact(context.instance, upstream)


@dg.asset(
    key=FINE_TUNED_MODEL,
    deps=[PROMPT_DATASET, ID_TOKENIZER],
    group_name="model",
    owners=["team:ml"],
    kinds={"pytorch", "huggingface"},
    code_version=f"train-v{TRAINING_CODE_VERSION}",
    check_specs=[
        dg.AssetCheckSpec(
            "validation_loss_improved",
            asset=FINE_TUNED_MODEL,
            blocking=True,
            description="The validation loss at the end of training is below the one before it (the model learnt).",
        )
    ],
    description=(
        "Decoder-only LM fine-tuned with LoRA to generate a user's next basket of item ids from the prompt. "
        "Trained by gpu_jobs/train.py (a local subprocess, or a Kubernetes GPU pod with RECSYS_GPU_MODE=kubernetes); "
        "writes models/<model_version>/ with adapter/, merged/ (plain HF checkpoint), tokenizer/, training_config.json, "
        "metrics.json and loss_curve.png. The model version derives from the data versions and the settings."
    ),
)
def fine_tuned_model(context: dg.AssetExecutionContext, config: FineTuneConfig, gpu_jobs: GpuJobRunner) -> dg.MaterializeResult:
    dataset_folder = input_folder(config.dataset_path, PROMPT_DATASET, context)
    tokenizer_folder = input_folder(config.tokenizer_path, ID_TOKENIZER, context)
    dataset, tokenizer = gpu_jobs.job_path(dataset_folder), gpu_jobs.job_path(tokenizer_folder)
    training = config.training(gpu_jobs.mode)
    args = ["--dataset", dataset, "--tokenizer", tokenizer, *training.to_args()]
    reported = gpu_jobs.run(context, module="gpu_jobs.train", args=args, gpu_count=config.gpu_count or None).get_materialize_result()
    start, end = reported.metadata["val_loss_start"].value, reported.metadata["val_loss_end"].value
    # Blocking: a run that did not learn (diverged, wrong data) must not reach the engine build
    # and generation downstream.
    check = dg.AssetCheckResult(
        check_name="validation_loss_improved",
        passed=bool(end < start),
        metadata={"val_loss_start": start, "val_loss_end": end},
    )
    # The job reports the model folder under its own mount of the store; downstream reads ours.
    local = dg.MetadataValue.path(str(gpu_jobs.local_path(reported.metadata["path"].value)))
    metadata = {
        **rounded(reported.metadata),
        "path": local,
        "training_time": duration(reported.metadata["train_seconds"].value),
        "hyperparameters": hyperparameter_table(training),
        # The data the model learnt from (their folders are named by version): what its model_version derives from.
        "prompt_dataset_version": Path(dataset_folder).name,
        "id_tokenizer_version": Path(tokenizer_folder).name,
        "prompt_dataset": dg.MetadataValue.path(dataset),
        "id_tokenizer": dg.MetadataValue.path(tokenizer),
    }
    return dg.MaterializeResult(metadata=metadata, data_version=reported.data_version, check_results=[check])


model_assets = [fine_tuned_model]

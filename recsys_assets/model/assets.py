"""Model layer: LoRA fine-tuning of the decoder-only recommender as a GPU job.

The asset only decides *what* to train (inputs, settings); gpu_jobs/train.py trains, and the
``gpu_jobs`` resource decides *where*: a local subprocess or a Kubernetes GPU pod. The job
reports its materialization (model version, path, losses, throughput) back through pipes.
"""

from dataclasses import Field, fields
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import dagster as dg
import pydantic

from gpu_jobs.train_config import TINY_LLAMA, TRAINING_CODE_VERSION, TrainingConfig
from recsys_assets.keys import FINE_TUNED_MODEL, ID_TOKENIZER, PROMPT_DATASET
from recsys_assets.metadata import duration, rounded
from resources import settings
from resources.artifacts import latest_artifact
from resources.gpu_jobs import GpuJobRunner

# Llama architecture, because TensorRT-LLM's PyTorch backend serves Llama and not OPT;
# 135M parameters, near the reference system's 125M OPT.
PRODUCTION_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M"


_TRAINING_TYPES = get_type_hints(TrainingConfig)


def _run_config_field(field: Field) -> tuple:
    """A TrainingConfig field as a run config field: the same name, default and description."""
    annotation, default = _TRAINING_TYPES[field.name], field.default
    if get_origin(annotation) is tuple:  # run config has lists, not tuples
        annotation, default = list[get_args(annotation)[0]], list(default)
    return annotation, pydantic.Field(default=default, description=field.metadata["doc"])


# Built from the dataclass: a training setting, its default and its description are written
# once, in gpu_jobs/train_config.py, and reach the launchpad from there.
TrainingRunConfig = pydantic.create_model(
    "TrainingRunConfig", __base__=dg.Config, **{field.name: _run_config_field(field) for field in fields(TrainingConfig)}
)


class FineTuneConfig(TrainingRunConfig):
    """Every TrainingConfig setting, plus what only the orchestrator decides: the base model's
    default per deployment, the pod's GPU count and the input folders."""

    base_model: str = pydantic.Field(
        default="",
        description='"tiny-llama" (a small Llama built from the tiny_* dims), or a local path / hub id of a causal LM. '
        "Empty: $RECSYS_BASE_MODEL, else tiny-llama for local GPU jobs and SmolLM2-135M (Llama) on Kubernetes.",
    )
    gpu_count: int = pydantic.Field(
        default=0, description="GPUs for the training pod in Kubernetes mode; 0: the train step's gpu_count in deploy/gpu-steps.yaml."
    )
    dataset_path: str = pydantic.Field(default="", description="Train on this prompt dataset folder instead of the latest llm_data/prompt_dataset.")
    tokenizer_path: str = pydantic.Field(default="", description="Use this tokenizer folder instead of the latest llm_data/id_tokenizer.")

    def training(self, gpu_mode: str) -> TrainingConfig:
        values = self.model_dump(include={f.name for f in fields(TrainingConfig)})
        values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
        values["base_model"] = self.base_model or default_base_model(gpu_mode)
        return TrainingConfig(**values)


def default_base_model(gpu_mode: str) -> str:
    return settings.base_model() or (PRODUCTION_BASE_MODEL if gpu_mode == "kubernetes" else TINY_LLAMA)


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

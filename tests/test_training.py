"""Fine-tuning as a GPU job: real training of a tiny Llama on CPU, through pipes and from a shell."""

import json
import os
import shutil
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from gpu_jobs.encoding import IGNORE, encode
from gpu_jobs.modeling import base_model, parameter_counts, with_lora
from gpu_jobs.prompt_format import generation_prefix, parse_item_ids
from gpu_jobs.train_config import TrainingConfig, model_version
from gpu_jobs.training_loop import evaluate
from recsys_assets.keys import ID_TOKENIZER, PROMPT_DATASET
from recsys_assets.model.assets import FineTuneConfig, fine_tuned_model
from resources.artifacts import ArtifactStore
from resources.gpu_jobs import GpuJobRunner
from synthetic_marketplace.generator import generate
from tests.conftest import SMALL_MARKET
from tests.training_data import write_dataset, write_tokenizer

DATASET, TOKENIZER = "ds-small", "tok-small"
# ~1,800 tokens a step, 80 steps: about 10 s of training on one CPU core; validation loss
# falls from ~7 (uniform over the vocabulary) to ~2.
SMALL_RUN = {
    "tiny_hidden_size": 64,
    "tiny_layers": 2,
    "tiny_heads": 4,
    "tiny_intermediate_size": 128,
    "epochs": 4,
    "batch_size": 16,
    "max_steps": 80,
    "learning_rate": 3e-3,
    "eval_every": 40,
    "val_examples": 64,
    "seed": 7,
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ArtifactStore:
    root = tmp_path_factory.mktemp("artifacts")
    dataset = write_dataset(root, DATASET, generate(SMALL_MARKET))
    write_tokenizer(root, TOKENIZER, dataset)
    return ArtifactStore(root=str(root))


def instance_with_llm_data(store: ArtifactStore) -> dg.DagsterInstance:
    """An instance where the llm-data assets were materialized (as issue 4's assets report them)."""
    instance = dg.DagsterInstance.ephemeral()
    for key, version_key, folder, version in (
        (PROMPT_DATASET, "dataset_version", "datasets", DATASET),
        (ID_TOKENIZER, "tokenizer_version", "tokenizers", TOKENIZER),
    ):
        metadata = {version_key: version, "path": str(store.base / folder / version)}
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))
    return instance


@pytest.fixture(scope="module")
def shell_run(store, tmp_path_factory):
    """The same job started from a shell, on its own copy of the inputs.

    It trains while the pipes run does (one thread each: two runs fill the two cores of a CI
    machine), and the test that compares the two collects it.
    """
    root = tmp_path_factory.mktemp("shell")
    for folder in (f"datasets/{DATASET}", f"tokenizers/{TOKENIZER}"):
        shutil.copytree(store.base / folder, root / folder)
    settings = FineTuneConfig(**SMALL_RUN).training("local")
    command = [sys.executable, "-m", "gpu_jobs.train", "--artifacts-root", str(root)]
    command += ["--dataset", f"datasets/{DATASET}", "--tokenizer", f"tokenizers/{TOKENIZER}", *settings.to_args()]
    log = open(root / "job.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    yield root, process
    log.close()
    if process.poll() is None:
        process.kill()


@pytest.fixture(scope="module")
def trained(store, shell_run) -> dg.ExecuteInProcessResult:
    """The asset, run as Dagster runs it: a local GPU-job subprocess talking back through pipes."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # the job subprocess inherits the environment
        result = dg.materialize(
            [fine_tuned_model],
            instance=instance_with_llm_data(store),
            resources={"gpu_jobs": GpuJobRunner(mode="local", artifacts=store), "artifacts": store},
            run_config={"ops": {"model__fine_tuned_model": {"config": SMALL_RUN}}},
        )
    assert result.success
    return result


def reported(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node("model__fine_tuned_model")
    return {key: value.value for key, value in materialization.metadata.items()}


def test_training_on_the_marketplace_cuts_validation_loss(trained):
    metadata = reported(trained)
    assert metadata["val_loss_end"] < 0.5 * metadata["val_loss_start"]
    assert metadata["steps"] == SMALL_RUN["max_steps"]
    assert metadata["tokens_per_s"] > 0 and metadata["wall_time_s"] > metadata["train_seconds"] > 0
    assert 0 < metadata["params_trainable"] < metadata["params_total"]
    assert metadata["loss_curve"].startswith("![loss curve](data:image/png;base64,")
    settings = {record.data["setting"]: record.data["value"] for record in metadata["hyperparameters"].records}
    assert settings["batch_size"] == str(SMALL_RUN["batch_size"]) and settings["max_steps"] == str(SMALL_RUN["max_steps"])
    (check,) = trained.get_asset_check_evaluations()
    assert check.passed


def test_model_folder_holds_the_contracted_outputs(trained):
    metadata = reported(trained)
    folder = metadata["path"]
    assert os.path.basename(folder) == metadata["model_version"]
    for name in ("adapter/adapter_config.json", "merged/config.json", "tokenizer/tokenizer.json", "loss_curve.png"):
        assert os.path.isfile(os.path.join(folder, name)), name
    metrics = json.load(open(os.path.join(folder, "metrics.json")))
    assert metrics["val_loss_end"] == pytest.approx(metadata["val_loss_end"], abs=5e-5)  # the UI shows 4 decimals
    settings = json.load(open(os.path.join(folder, "training_config.json")))
    assert settings["lora_r"] == 8 and settings["tiny_hidden_size"] == 64 and settings["base_model"] == "tiny-llama"


def test_merged_checkpoint_is_a_plain_llama_that_scores_like_the_adapter(trained, store):
    """What inference loads (no peft) reproduces the validation loss of the trained adapter."""
    metadata = reported(trained)
    merged = os.path.join(metadata["path"], "merged")
    model = AutoModelForCausalLM.from_pretrained(merged)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert isinstance(model, LlamaForCausalLM)
    # Room for a prompt of max_length and as many new tokens: an engine caps sequences at the positions.
    assert model.config.max_position_embeddings >= 2 * 310
    settings = TrainingConfig(batch_size=16)
    val = encode(pd.read_parquet(store.base / "datasets" / DATASET / "val.parquet").head(SMALL_RUN["val_examples"]), tokenizer, 310)
    loss = evaluate(model, val, settings, tokenizer.pad_token_id, torch.device("cpu"), None)
    assert loss == pytest.approx(metadata["val_loss_end"], rel=1e-4)

    prompt = pd.read_parquet(store.base / "datasets" / DATASET / "val.parquet").prompt[0]
    prefix = tokenizer(generation_prefix(prompt), return_tensors="pt")
    output = model.generate(**prefix, max_new_tokens=24, do_sample=False)
    assert parse_item_ids(tokenizer.decode(output[0, prefix.input_ids.shape[1] :], skip_special_tokens=True))


def test_standalone_shell_run_gives_the_same_model(trained, shell_run):
    root, process = shell_run
    stdout, _ = process.communicate(timeout=600)
    assert process.returncode == 0, (root / "job.log").read_text()[-3000:]

    summary = json.loads(stdout)
    piped = reported(trained)
    assert summary["data_version"] == piped["model_version"]
    assert summary["metadata"]["val_loss_curve"] == pytest.approx(piped["val_loss_curve"], abs=5e-5)  # shown rounded
    standalone = load_file(root / "models" / piped["model_version"] / "merged" / "model.safetensors")
    orchestrated = load_file(os.path.join(piped["path"], "merged", "model.safetensors"))
    assert standalone.keys() == orchestrated.keys()
    assert all(torch.equal(standalone[name], orchestrated[name]) for name in standalone)


def test_loss_is_on_the_target_tokens_only(store):
    tokenizer = AutoTokenizer.from_pretrained(store.base / "tokenizers" / TOKENIZER)
    frame = pd.DataFrame({"prompt": ["Based on the purchase history: [1234567]."], "target": ["7654321, 1111111"]})
    examples = encode(frame, tokenizer, max_length=310)
    ids, labels = examples.input_ids[0], examples.labels[0]
    prefix_length = len(tokenizer(generation_prefix(frame.prompt[0]))["input_ids"])
    assert labels[:prefix_length] == [IGNORE] * prefix_length
    assert labels[prefix_length:] == ids[prefix_length:] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[prefix_length:-1]) == "7654321, 1111111"

    cut = encode(frame, tokenizer, max_length=prefix_length + 3)
    assert cut.truncated == 1 and len(cut.input_ids[0]) == prefix_length + 3
    assert encode(frame, tokenizer, max_length=prefix_length).skipped == 1


def test_model_version_moves_with_data_and_settings():
    settings = TrainingConfig()
    version = model_version(settings, "d1", "t1")
    assert version == model_version(TrainingConfig(), "d1", "t1")
    assert len({version, model_version(settings, "d2", "t1"), model_version(settings, "d1", "t2"),
                model_version(TrainingConfig(lora_r=16), "d1", "t1")}) == 4


# Small stand-ins for the pretrained bases, saved locally and loaded by the production path
# (from_pretrained on a path): Llama and Qwen2 as served by TensorRT-LLM, OPT as in the reference.
PRETRAINED = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                                  num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(vocab_size=500, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                                  num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)),
    "opt": lambda: OPTForCausalLM(OPTConfig(vocab_size=500, hidden_size=32, ffn_dim=64, num_hidden_layers=4,
                                            num_attention_heads=2, word_embed_proj_dim=32)),
}


@pytest.mark.parametrize("architecture", PRETRAINED)
def test_pretrained_base_is_cut_resized_and_keeps_tied_embeddings(architecture, store, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(store.base / "tokenizers" / TOKENIZER)
    PRETRAINED[architecture]().save_pretrained(tmp_path / "base")

    settings = TrainingConfig(base_model=str(tmp_path / "base"), keep_layers=2, lora_target_modules=("all-linear",))
    model, train_embeddings = base_model(settings, tokenizer)
    assert len(model.get_decoder().layers) == model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) and train_embeddings

    before = model.get_input_embeddings().weight.detach().clone()
    peft_model = with_lora(model, settings, train_embeddings)
    total, trainable = parameter_counts(peft_model)
    assert trainable < total
    batch = torch.tensor([tokenizer("Based on the purchase history: [1234567]")["input_ids"]])
    peft_model(input_ids=batch, labels=batch).loss.backward()
    torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0).step()
    merged = peft_model.merge_and_unload()
    # The new tokens' embeddings trained, and input and output still share one matrix.
    assert not torch.equal(merged.get_input_embeddings().weight, before)
    assert torch.equal(merged.lm_head.weight, merged.get_input_embeddings().weight)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert type(reloaded) is type(merged) and reloaded.config.num_hidden_layers == 2

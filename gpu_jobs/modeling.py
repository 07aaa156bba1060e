"""The decoder-only model: a base (tiny from a config, or pretrained) with LoRA adapters on top."""

from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from gpu_jobs.train_config import TINY_LLAMA, TrainingConfig

# Names of the input embedding and output layer in Llama, Qwen and OPT alike.
EMBEDDING_MODULES = ["embed_tokens", "lm_head"]


def base_model(config: TrainingConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[PreTrainedModel, bool]:
    """(model sized to the tokenizer, whether its embeddings must train).

    Embeddings train when the model starts from random weights or the tokenizer brings tokens
    the base has never seen: LoRA on the inner layers cannot give a token a meaning.
    """
    if config.base_model == TINY_LLAMA:
        torch.manual_seed(config.seed)  # the random init is part of the run's identity
        return LlamaForCausalLM(tiny_llama_config(config, tokenizer)), True
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    if config.keep_layers:
        keep_first_layers(model, config.keep_layers)
    new_tokens = len(tokenizer) != model.get_input_embeddings().num_embeddings
    if new_tokens:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, new_tokens


def tiny_llama_config(config: TrainingConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.tiny_hidden_size,
        intermediate_size=config.tiny_intermediate_size,
        num_hidden_layers=config.tiny_layers,
        num_attention_heads=config.tiny_heads,
        num_key_value_heads=config.tiny_heads,
        # A prompt may fill max_length and generation adds up to as many tokens again; an engine
        # (TensorRT-LLM) caps a sequence at these positions. Rotary positions cost no weights.
        max_position_embeddings=2 * config.max_length,
        # Untied: the output layer of a from-scratch model learns item-id frequencies on its own.
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def keep_first_layers(model: PreTrainedModel, layers: int) -> None:
    """Cut the decoder stack to its first ``layers`` blocks (how the reference made OPT-125M small)."""
    decoder = model.get_decoder()
    if layers > len(decoder.layers):
        raise ValueError(f"keep_layers={layers} but {model.config.name_or_path} has {len(decoder.layers)} layers")
    decoder.layers = decoder.layers[:layers]
    model.config.num_hidden_layers = layers
    if getattr(model.config, "layer_types", None):  # per-layer attention kinds (Qwen2, newer Llamas)
        model.config.layer_types = model.config.layer_types[:layers]


def with_lora(model: PreTrainedModel, config: TrainingConfig, train_embeddings: bool) -> PeftModel:
    targets = config.lora_target_modules
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ("all-linear",) else list(targets),
        # Full copies of the embeddings and output layer train beside the adapters, and are
        # merged back into the plain checkpoint; tied weights stay tied.
        modules_to_save=EMBEDDING_MODULES if train_embeddings else None,
        ensure_weight_tying=train_embeddings and bool(model.config.tie_word_embeddings),
    )
    return get_peft_model(model, lora)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(total, trainable) over distinct tensors, so tied weights count once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique), sum(p.numel() for p in unique if p.requires_grad)

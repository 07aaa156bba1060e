"""A Llama-architecture checkpoint built from a config, saved like a merged fine-tuned model.

No pretrained weights can be downloaded where the platform is tested and benchmarked, so the
tests (a tiny model, briefly trained) and the speed benchmark (a reference-sized model with
random weights) build their own checkpoint here: ``config.json`` + weights + the tokenizer
in one folder, exactly what ``gpu_jobs.train`` writes to ``models/<version>/merged``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True)
class LlamaShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    # Rows of the embedding/output layer. None: the tokenizer's size. A benchmark may ask for
    # more to pay for the output layer of a larger tokenizer; the extra tokens decode to "".
    vocab_size: int | None = None


def random_llama(tokenizer: PreTrainedTokenizerBase, shape: LlamaShape, seed: int = 0) -> LlamaForCausalLM:
    import torch

    vocab_size = shape.vocab_size or len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_checkpoint(model, tokenizer: PreTrainedTokenizerBase, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory

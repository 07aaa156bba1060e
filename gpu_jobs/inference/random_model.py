"""A Llama-architecture checkpoint built from a config, with an item-id tokenizer.

No pretrained weights can be downloaded where the platform is tested and benchmarked, so
the tests (a tiny model, briefly trained) and the speed benchmark (a reference-sized model
with random weights) build their own checkpoint here and save it like a merged fine-tuned
model: ``config.json`` + weights + tokenizer files in one folder.

The tokenizer splits item ids into groups of up to three digits (the "grouped digits"
tokenization of the method): a 7-digit id is three tokens, and ids sharing a prefix share
the first tokens. Every token carries its own text and decoding concatenates them, so
``decode(encode(text)) == text`` and generated text parses back into the same ids.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from gpu_jobs.prompt_format import ID_SEPARATOR, SEPARATOR

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD)
DIGIT_GROUP = 3
# The prompt template of the method; its words become whole tokens.
PROMPT_WORDS_SAMPLE = (
    "Based on the purchase history: [1, 2]. What next products will be bought by the user: 1, "
    "geo: 1, age: 1, gender: 1, purchasing power: 0.5?" + SEPARATOR
)
# The id separator first so that ", " is one token; then digit groups, words with their leading
# space (fewer prompt tokens), single characters.
_PIECE = rf"{re.escape(ID_SEPARATOR)}|\d{{1,{DIGIT_GROUP}}}| ?[A-Za-z]+|\s|[^\sA-Za-z\d]"


def id_vocabulary(vocab_size: int | None = None) -> list[str]:
    """Special tokens, every digit group, template words and punctuation; padded with unused
    tokens up to ``vocab_size`` when a benchmark wants the output layer of a larger tokenizer."""
    digit_groups = ["".join(d) for n in range(1, DIGIT_GROUP + 1) for d in product("0123456789", repeat=n)]
    template_pieces = [p for p in re.findall(_PIECE, PROMPT_WORDS_SAMPLE) if not p.isdigit()]
    tokens = list(dict.fromkeys([*SPECIAL_TOKENS, ID_SEPARATOR, *digit_groups, *template_pieces]))
    if vocab_size is not None:
        if vocab_size < len(tokens):
            raise ValueError(f"vocab_size {vocab_size} is below the {len(tokens)} tokens the id tokenizer needs")
        tokens += [f"<unused_{i}>" for i in range(vocab_size - len(tokens))]
    return tokens


def build_id_tokenizer(vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    tokens = id_vocabulary(vocab_size)
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECE), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()  # tokens carry their own spaces: concatenate them
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD, padding_side="left"
    )


def llama_config(tokenizer: PreTrainedTokenizerFast, *, layers: int, hidden: int, intermediate: int, heads: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_llama(tokenizer: PreTrainedTokenizerFast, *, layers: int, hidden: int, intermediate: int, heads: int, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tokenizer, layers=layers, hidden=hidden, intermediate=intermediate, heads=heads))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_checkpoint(model, tokenizer: PreTrainedTokenizerFast, directory: Path) -> Path:
    """Save like a merged fine-tuned model: weights, config and tokenizer in one folder."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def parameter_count(model, *, include_input_embeddings: bool = True) -> int:
    total = sum(p.numel() for p in model.parameters())
    return total if include_input_embeddings else total - model.get_input_embeddings().weight.numel()

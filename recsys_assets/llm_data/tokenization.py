"""Id tokenizers: how many tokens an item id costs, which decides generation speed.

Three options over one pre-tokenization (words, punctuation and numbers kept apart, spaces
as ``▁`` so decoding restores the text exactly):

- ``digits``: one token per digit, the way most base tokenizers see numbers.
- ``grouped``: digits in groups of ``group`` from the left, so ids that share a prefix share
  their first token (and its embedding).
- ``bpe``: byte-pair merges learned on the id corpus: frequent ids and id prefixes become
  single tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product

import pandas as pd

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

OPTIONS = ("digits", "grouped", "bpe")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]
SPACE = "▁"


def _pre_tokenizer(number_pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never"),
            pre_tokenizers.Split(Regex(rf"[^\w{SPACE}]"), behavior="isolated"),
            pre_tokenizers.Split(Regex(number_pattern), behavior="isolated"),
        ]
    )


def _number_pattern(option: str, group: int) -> str:
    return {"digits": r"\d", "grouped": rf"\d{{1,{group}}}", "bpe": r"\d+"}[option]


def _words(corpus: Iterable[str], pre: pre_tokenizers.PreTokenizer) -> set[str]:
    return {piece for text in corpus for piece, _ in pre.pre_tokenize_str(text) if not piece.isdigit()}


def train_id_tokenizer(option: str, corpus: list[str], group: int = 3, bpe_vocab_size: int = 8000) -> PreTrainedTokenizerFast:
    """A tokenizer for prompt/target texts; ``corpus`` holds such texts (or bare id lists)."""
    if option not in OPTIONS:
        raise ValueError(f"Unknown tokenizer option {option!r}; choose one of {', '.join(OPTIONS)}.")
    pre = _pre_tokenizer(_number_pattern(option, group))
    if option == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre
        alphabet = sorted(set("0123456789") | {c for word in _words(corpus, pre) for c in word})
        trainer = trainers.BpeTrainer(
            vocab_size=bpe_vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False
        )
        tokenizer.train_from_iterator(corpus, trainer=trainer)
    else:
        width = 1 if option == "digits" else group
        numbers = ["".join(p) for n in range(1, width + 1) for p in product("0123456789", repeat=n)]
        vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *numbers, *sorted(_words(corpus, pre))])}
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = pre
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="never")
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, clean_up_tokenization_spaces=False
    )


def tokens_per_id(tokenizer: PreTrainedTokenizerFast, item_ids: Iterable[int]) -> float:
    ids = [str(i) for i in item_ids]
    encoded = tokenizer(ids, add_special_tokens=False)["input_ids"]
    return sum(map(len, encoded)) / max(len(ids), 1)


def round_trips(tokenizer: PreTrainedTokenizerFast, item_ids: Iterable[int]) -> list[int]:
    """Ids whose decode(encode(id)) differs from the id; empty when every id round-trips."""
    ids = [str(i) for i in item_ids]
    encoded = tokenizer(ids, add_special_tokens=False)["input_ids"]
    decoded = tokenizer.batch_decode(encoded, skip_special_tokens=True)
    return [int(i) for i, text in zip(ids, decoded) if text != i]


@dataclass(frozen=True)
class LengthReport:
    option: str
    vocab_size: int
    tokens_per_id: float
    prompt_tokens: float
    target_tokens: float


def length_report(option: str, tokenizer, item_ids: list[int], prompts: list[str], targets: list[str]) -> LengthReport:
    def mean_length(texts: list[str]) -> float:
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return sum(map(len, encoded)) / max(len(texts), 1)

    return LengthReport(option, len(tokenizer), tokens_per_id(tokenizer, item_ids), mean_length(prompts), mean_length(targets))


def comparison_frame(reports: list[LengthReport]) -> pd.DataFrame:
    """The side-by-side table of the reference talk: lengths and their change vs digit-per-token."""
    base = next(r for r in reports if r.option == "digits")
    return pd.DataFrame(
        [
            {
                "tokenizer": r.option,
                "vocab": r.vocab_size,
                "tokens_per_id": round(r.tokens_per_id, 2),
                "prompt_tokens": round(r.prompt_tokens),
                "prompt_vs_digits": f"{r.prompt_tokens / base.prompt_tokens - 1:+.0%}",
                "target_tokens": round(r.target_tokens),
                "target_vs_digits": f"{r.target_tokens / base.target_tokens - 1:+.0%}",
            }
            for r in reports
        ]
    )

"""Token lengths of prompts and id lists, counted in batches rather than one text at a time.

Fitting a history into the token budget asks for a prompt's length at many history lengths.
Tokenizing each candidate prompt costs ~0.2 ms, which at 100k users and several training
windows was most of the prompt dataset's time. The id tokenizers keep ids, punctuation and
spaces apart before they merge anything, so a prompt's length is its frame's (the template
with an empty history) plus each id's own tokens plus a fixed cost per separator: every id
and the frame are tokenized once, in batches, and lengths are sums. A tokenizer for which
that does not hold (a base model's own, a test's word counter) is caught by `exact`, which
recounts the finished texts in one batch; the dataset builder falls back to counting those
examples text by text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from gpu_jobs.prompt_format import format_item_ids

BatchCounter = Callable[[list[str]], list[int]]


class TokenLengths:
    def __init__(self, count: BatchCounter):
        self._count = count
        self._id_tokens: dict[int, int] = {}
        one, two = count([format_item_ids([0]), format_item_ids([0, 0])])
        self.separator = two - 2 * one  # the tokens of ", " between two ids

    @classmethod
    def of_tokenizer(cls, tokenizer) -> TokenLengths:
        """Counts with the Rust tokenizer behind a transformers one (``encode_batch_fast``: no offsets, no Python
        encodings), which is what the training and generation jobs tokenize with."""
        backend = tokenizer.backend_tokenizer
        return cls(lambda texts: [len(encoding.ids) for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)])

    def exact(self, texts: Sequence[str]) -> list[int]:
        """Each text's length, tokenized whole."""
        return self._count(list(texts)) if texts else []

    def one(self, text: str) -> int:
        return self._count([text])[0]

    def learn_ids(self, item_ids: Iterable[int]) -> None:
        """Count the ids not seen yet, in one batch."""
        new = sorted({int(i) for i in item_ids} - self._id_tokens.keys())
        self._id_tokens.update(zip(new, self.exact([str(i) for i in new])))

    def id_tokens(self, item_ids: Sequence[int]) -> list[int]:
        """Tokens of each id on its own (``learn_ids`` first)."""
        return [self._id_tokens[int(i)] for i in item_ids]

    def of_ids(self, item_ids: Sequence[int]) -> int:
        """Tokens of ``format_item_ids(item_ids)``, from the ids' counts."""
        return sum(self.id_tokens(item_ids)) + self.separator * max(len(item_ids) - 1, 0)

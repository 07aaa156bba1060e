"""Rank items for a user by the fine-tuned model's own likelihood (teacher-forced, no sampling).

An item's score is ``log P(id tokens, then the end of that id | prompt + separator)``: the
probability that the model writes this item as the first of the user's next purchases. The
end of the id (the list separator or the end token) is part of it, so an id is never
confused with a longer id it is a prefix of.

The prompt is run once per user; its KV cache is repeated for the user's candidates, which
then cost only their own few tokens each (the way LLM re-rankers score a candidate set).
Ids are tokenized on their own, as the training completions are (``gpu_jobs.encoding.encode``).
The same code runs on a GPU (production) and on the CPU with a tiny model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpu_jobs.prompt_format import ID_SEPARATOR

# Candidates scored per forward pass: bounds the repeated KV cache (candidates x prompt tokens).
CANDIDATE_BATCH = 256


class LikelihoodScorer:
    def __init__(self, model_dir: Path, *, threads: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        from gpu_jobs.inference.backends import available_cores

        transformers_logging.disable_progress_bar()  # a job's log is for its own progress lines
        self._torch = torch
        torch.set_num_threads(threads or available_cores())
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        separator = self.tokenizer(ID_SEPARATOR, add_special_tokens=False)["input_ids"]
        self.id_ends = torch.tensor(sorted({separator[0], self.tokenizer.eos_token_id}), device=self.device)
        self._id_tokens: dict[int, list[int]] = {}

    def id_tokens(self, item_ids: Sequence[int]) -> list[list[int]]:
        missing = [i for i in dict.fromkeys(item_ids) if i not in self._id_tokens]
        if missing:
            encoded = self.tokenizer([str(i) for i in missing], add_special_tokens=False)["input_ids"]
            self._id_tokens.update(zip(missing, encoded))
        return [self._id_tokens[i] for i in item_ids]

    def score(self, prefix: str, item_ids: Sequence[int]) -> np.ndarray:
        """Log-likelihood of each item as the first id written after ``prefix``."""
        if not item_ids:
            return np.zeros(0)
        torch = self._torch
        with torch.inference_mode():
            prompt = torch.tensor([self.tokenizer(prefix)["input_ids"]], device=self.device)
            out = self.model(input_ids=prompt, use_cache=True)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores = [
                self._score_batch(out.cache, first, item_ids[start : start + CANDIDATE_BATCH])
                for start in range(0, len(item_ids), CANDIDATE_BATCH)
            ]
        return np.concatenate(scores)

    def _score_batch(self, prompt_cache, first, item_ids: Sequence[int]) -> np.ndarray:
        torch = self._torch
        tokens = self.id_tokens(item_ids)
        lengths = torch.tensor([len(t) for t in tokens], device=self.device)
        width = int(lengths.max())
        # Right padding needs no attention mask: a causal model's real positions never see the pads after them.
        ids = torch.full((len(tokens), width), self.tokenizer.eos_token_id, device=self.device)
        for row, item_tokens in enumerate(tokens):
            ids[row, : len(item_tokens)] = torch.tensor(item_tokens, device=self.device)
        cache = _repeated(prompt_cache, len(tokens))
        logprobs = torch.log_softmax(self.model(input_ids=ids, cache=cache, use_cache=True).logits.float(), dim=-1)
        # Position j predicts token j + 1; the prompt's last position predicts token 0.
        positions = torch.arange(width, device=self.device)
        inside = positions[None, :] < lengths[:, None]
        later = logprobs[:, :-1].gather(2, ids[:, 1:, None])[..., 0] if width > 1 else ids[:, :0].float()
        token_scores = torch.cat([first[ids[:, 0]][:, None], later], dim=1).masked_fill(~inside, 0.0).sum(dim=1)
        last = logprobs[torch.arange(len(tokens), device=self.device), lengths - 1]
        end_scores = torch.logsumexp(last[:, self.id_ends], dim=1)
        return (token_scores + end_scores).cpu().numpy().astype(np.float64)


def _repeated(cache, times: int):
    """A copy of a one-row KV cache for ``times`` rows (the scoring forward appends to it)."""
    import copy

    repeated = copy.deepcopy(cache)
    repeated.batch_repeat_interleave(times)
    return repeated

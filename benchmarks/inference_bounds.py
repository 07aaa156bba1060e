"""The arithmetic bound of benchmarks/inference.py: the FLOPs a user costs and the matmul rates this machine delivers."""

from __future__ import annotations

import time
from dataclasses import dataclass

from gpu_jobs.inference.random_model import LlamaShape


@dataclass(frozen=True)
class MatmulRates:
    """What this machine's matrix units deliver right now, in multiply-adds x 2 per second."""

    fp32: float
    int8: float | None  # None where torch has no CPU int8 matmul

    def for_precision(self, precision: str) -> float:
        # torch's CPU _int_mm is a reference kernel in some builds (2 GOP/s against 90-180 GF/s fp32 with
        # torch 2.13 on the 2-core machine, 2026-12-06): a rate below fp32 is no ceiling for an int8 engine.
        return max(self.int8, self.fp32) if precision.startswith("int8") and self.int8 else self.fp32


def prefill_flops(shape: LlamaShape, prompt_length: float) -> float:
    """The prompt once through every layer (its logits are the first decode step's)."""
    per_token = 2 * (4 * shape.hidden**2 + 3 * shape.hidden * shape.intermediate)  # q, k, v, o + gate, up, down
    attention = 2 * shape.hidden * prompt_length**2  # 4 * hidden per causal (query, key) pair
    return shape.layers * (per_token * prompt_length + attention)


def decode_flops(shape: LlamaShape, prompt_length: float, chains: int, new_tokens: int) -> float:
    """Every chain's tokens through every layer and the output layer, attending to all before."""
    per_token = 2 * (4 * shape.hidden**2 + 3 * shape.hidden * shape.intermediate)
    attention = 4 * shape.hidden * (new_tokens * prompt_length + new_tokens * (new_tokens - 1) / 2)
    output_layer = 2 * shape.hidden * shape.vocab_size * new_tokens
    return chains * (shape.layers * (per_token * new_tokens + attention) + output_layer)


def flops_per_user(shape: LlamaShape, prompt_length: float, chains: int, new_tokens: int) -> float:
    """Multiply-adds x 2 of the minimal algorithm: the prompt prefilled once, then every chain
    decodes ``new_tokens`` tokens."""
    return prefill_flops(shape, prompt_length) + decode_flops(shape, prompt_length, chains, new_tokens)


def best_seconds(operation, repeats: int = 5) -> float:
    operation()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        operation()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_rates(threads: int, size: int = 2048) -> MatmulRates:
    """Best-of-5 fp32 and int8 matmul rates. The int8 one is the ceiling for an int8 engine:
    VNNI multiplies four int8 pairs where fp32 FMA does one. torch exposes int8 CPU matmul
    only as the underscored ``torch._int_mm``; without it the int8 rate is left out."""
    import torch

    torch.set_num_threads(threads)
    work = 2 * size**3
    a, b = torch.randn(size, size), torch.randn(size, size)
    fp32 = work / best_seconds(lambda: a @ b)
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is None:
        return MatmulRates(fp32, None)
    # Half the size for int8: where its kernel is slow (see for_precision), full size costs a minute a probe.
    half = size // 2
    a8, b8 = torch.randint(-128, 128, (half, half), dtype=torch.int8), torch.randint(-128, 128, (half, half), dtype=torch.int8)
    return MatmulRates(fp32, 2 * half**3 / best_seconds(lambda: int_mm(a8, b8), repeats=2))

"""What every inference backend shares: the sampling settings of the method, the engine
manifest, and the interface a backend implements.

An engine is a folder prepared from the merged fine-tuned model for one backend (a
CTranslate2 conversion, a copy in the serving precision, ...) plus ``engine.json``, the
manifest that records which backend and precision it is for, how long it took to build and
how large it is. A generate job needs only the folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Protocol

ENGINE_MANIFEST = "engine.json"
# Files that make a checkpoint folder self-contained for tokenization, copied into engines.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt")


@dataclass(frozen=True)
class SamplingConfig:
    """Generation as in the method: N independent sampled chains per user.

    ``max_new_tokens`` is the "maximum sequence length 310" of the method, read as the length
    of each generated chain: at about 4 tokens per id that is ~75 ids a chain, so 4 chains
    can fill a top-200 list. ``min_new_tokens`` stays 0 in production; the benchmark sets it
    to ``max_new_tokens`` so every backend does exactly the same amount of work.
    """

    chains: int = 4
    top_p: float = 0.9
    temperature: float = 0.7
    top_k: int = 50
    max_new_tokens: int = 310
    min_new_tokens: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.chains < 1:
            raise ValueError(f"chains must be >= 1, got {self.chains}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (the method samples), got {self.temperature}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens or self.max_new_tokens < 1:
            raise ValueError(f"need 0 <= min_new_tokens <= max_new_tokens and max_new_tokens >= 1, got {self}")


@dataclass(frozen=True)
class Generations:
    chains: list[list[str]]  # for every prefix, the completion of each chain
    generated_tokens: int  # over all chains, end tokens excluded: the work done, for tokens/s


@dataclass(frozen=True)
class EngineInfo:
    backend: str
    precision: str
    build_seconds: float
    size_bytes: int
    source_model: str

    def save(self, engine_dir: Path) -> Path:
        path = Path(engine_dir) / ENGINE_MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, engine_dir: Path) -> EngineInfo:
        path = Path(engine_dir) / ENGINE_MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{engine_dir} has no {ENGINE_MANIFEST}: prepare it with `python -m gpu_jobs.build_engine`, "
                "or name the backend explicitly to use the folder as it is"
            )
        return cls(**json.loads(path.read_text()))


class GenerationBackend(Protocol):
    """One inference engine. ``prepare`` builds an engine folder from the merged model (in the
    GPU job for GPU backends); constructing the backend on that folder loads it; ``generate``
    returns, for every prefix, the completions of ``sampling.chains`` independent chains, in
    the order of the prefixes, batching at most ``batch_size`` prefixes per forward pass."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]  # the first is the default
    precision: str  # what this loaded engine computes in

    @classmethod
    def prepare(cls, merged_model_dir: Path, out_dir: Path, precision: str | None = None) -> EngineInfo: ...

    def __init__(self, engine_dir: Path, *, precision: str | None = None, threads: int = 0) -> None: ...

    def generate(self, prefixes: Sequence[str], sampling: SamplingConfig, batch_size: int) -> Generations: ...


def resolve_precision(backend: type[GenerationBackend], precision: str | None) -> str:
    chosen = precision or backend.precisions[0]
    if chosen not in backend.precisions:
        raise ValueError(f"{backend.name} supports precisions {', '.join(backend.precisions)}; got {chosen!r}")
    return chosen


def directory_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())


def tokenizer_files(model_dir: Path) -> list[str]:
    return [name for name in TOKENIZER_FILES if (Path(model_dir) / name).is_file()]


def chains_per_prefix(flat_completions: Sequence[str], chains: int) -> list[list[str]]:
    """Regroup completions that come out prefix-major (all chains of prefix 0, then 1, ...)."""
    return [list(flat_completions[i : i + chains]) for i in range(0, len(flat_completions), chains)]

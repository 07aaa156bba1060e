"""The inference backends behind one interface (``engine.GenerationBackend``).

- ``ctranslate2``: the fast CPU backend of the embedded default. int8 weights; every prompt
  is prefilled once and its KV cache tiled for the N sampled chains (see ``generate``).
- ``transformers``: plain ``model.generate``, the correctness reference. It repeats each
  prompt N times (``num_return_sequences``), so the prefill runs once per chain.
- ``tensorrt-llm``: GPU production, TensorRT-LLM 1.x LLM API on its PyTorch backend, served
  from the Hugging Face checkpoint (the ``trtllm-build`` engine path is gone). Only installed
  in the GPU image; imported lazily.

Heavy libraries are imported inside the backends so that importing this module (e.g. for
``--help`` or the registry) stays cheap.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from gpu_jobs.inference.engine import (
    ENGINE_MANIFEST,
    EngineInfo,
    GenerationBackend,
    Generations,
    SamplingConfig,
    chains_per_prefix,
    directory_size,
    resolve_precision,
    tokenizer_files,
)
from gpu_jobs.inference.memory import keep_freed_memory_for_reuse


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def int8_gemm_saturates(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether CTranslate2's int8 matrix products come out wrong on this CPU.

    CTranslate2 multiplies int8 matrices with MKL on Intel CPUs and with oneDNN on other x86
    CPUs. Without the VNNI dot-product instructions, oneDNN's u8s8 kernel adds pairs of
    products in 16 bits with saturation (``vpmaddubsw``), so large activations are clipped.
    Measured on an AMD EPYC with AVX2 and no VNNI: a logit of 160 came out as 1.26, and a toy
    model's valid-id rate fell from 0.63 to 0.53 against the fp32 reference. ARM CPUs (ruy)
    and Intel CPUs (MKL) are exact.
    """
    if (machine or platform.machine()).lower() not in {"x86_64", "amd64"}:
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no way to tell, and MKL serves the common case (Intel)
            return False
    first_core = cpuinfo.split("\n\n", 1)[0]
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in first_core.splitlines())}
    flags = set(fields.get("flags", "").split())
    return fields.get("vendor_id") != "GenuineIntel" and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def exact_compute_type(requested: str, saturates: bool) -> str:
    """The requested compute type, or float32 where int8 products saturate on this CPU."""
    return "float32" if requested.startswith("int8") and saturates else requested


def _finish(backend: type[GenerationBackend], precision: str, started: float, merged_model_dir: Path, out_dir: Path) -> EngineInfo:
    info = EngineInfo(
        backend=backend.name,
        precision=precision,
        build_seconds=round(time.perf_counter() - started, 3),
        size_bytes=directory_size(out_dir),
        source_model=str(merged_model_dir),
    )
    info.save(out_dir)
    return info


class CTranslate2Backend:
    name: ClassVar[str] = "ctranslate2"
    # The CPU compute types (GPUs serve through TensorRT-LLM); int8 weights are the fast default.
    precisions: ClassVar[tuple[str, ...]] = ("int8", "int8_float32", "float32")

    @classmethod
    def prepare(cls, merged_model_dir: Path, out_dir: Path, precision: str | None = None) -> EngineInfo:
        from ctranslate2.converters import TransformersConverter

        chosen = resolve_precision(cls, precision)
        started = time.perf_counter()
        converter = TransformersConverter(str(merged_model_dir), copy_files=tokenizer_files(merged_model_dir))
        converter.convert(str(out_dir), quantization=chosen, force=True)
        return _finish(cls, chosen, started, Path(merged_model_dir), Path(out_dir))

    def __init__(self, engine_dir: Path, *, precision: str | None = None, threads: int = 0) -> None:
        import ctranslate2
        from transformers import AutoTokenizer

        keep_freed_memory_for_reuse()  # before the generator's threads allocate (see memory.py)
        self._ctranslate2 = ctranslate2
        self.engine_dir = Path(engine_dir)
        requested = resolve_precision(type(self), precision)
        self.precision = exact_compute_type(requested, int8_gemm_saturates())
        if self.precision != requested:
            print(
                f"ctranslate2: this CPU's int8 products saturate (no VNNI; see int8_gemm_saturates), "
                f"computing in {self.precision} instead of {requested}",
                file=sys.stderr,
            )
        self.threads = threads or available_cores()
        self.generator = self._load_generator()
        self.tokenizer = AutoTokenizer.from_pretrained(str(engine_dir))

    def _load_generator(self):
        return self._ctranslate2.Generator(
            str(self.engine_dir), device="cpu", compute_type=self.precision, inter_threads=1, intra_threads=self.threads
        )

    def generate(self, prefixes: Sequence[str], sampling: SamplingConfig, batch_size: int) -> Generations:
        if sampling.seed is not None:
            # Each CTranslate2 worker thread seeds its random generator once, when it first
            # samples: a fixed seed takes effect only on a freshly loaded generator.
            self._ctranslate2.set_random_seed(sampling.seed)
            self.generator = self._load_generator()
        prompts = [self.tokenizer.convert_ids_to_tokens(ids) for ids in self.tokenizer(list(prefixes))["input_ids"]]
        # include_prompt_in_result=False forwards the prompts through the decoder in one step
        # (the prefill), then greedy search with sampling tiles that KV cache once per
        # hypothesis: N chains share one prefill. The prefill covers a batch up to its
        # shortest prompt, the rest is decoded token by token per chain, so max_batch_size lets
        # CTranslate2 sort the inputs by length before it cuts them into batches.
        results = self.generator.generate_batch(
            prompts,
            max_batch_size=batch_size,
            num_hypotheses=sampling.chains,
            sampling_topk=sampling.top_k,
            sampling_topp=sampling.top_p,
            sampling_temperature=sampling.temperature,
            max_length=sampling.max_new_tokens,
            min_length=sampling.min_new_tokens,
            include_prompt_in_result=False,
        )
        return Generations(
            chains=[self.tokenizer.batch_decode(r.sequences_ids, skip_special_tokens=True) for r in results],
            generated_tokens=sum(len(ids) for r in results for ids in r.sequences_ids),
        )


class TransformersBackend:
    name: ClassVar[str] = "transformers"
    precisions: ClassVar[tuple[str, ...]] = ("float32", "bfloat16", "float16")

    @classmethod
    def prepare(cls, merged_model_dir: Path, out_dir: Path, precision: str | None = None) -> EngineInfo:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        chosen = resolve_precision(cls, precision)
        started = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(str(merged_model_dir), dtype=getattr(torch, chosen))
        model.save_pretrained(out_dir)
        AutoTokenizer.from_pretrained(str(merged_model_dir)).save_pretrained(out_dir)
        return _finish(cls, chosen, started, Path(merged_model_dir), Path(out_dir))

    def __init__(self, engine_dir: Path, *, precision: str | None = None, threads: int = 0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        keep_freed_memory_for_reuse()  # the reference gets the same allocator (see memory.py)
        self._torch = torch
        torch.set_num_threads(threads or available_cores())
        self.precision = resolve_precision(type(self), precision)
        dtype = getattr(torch, self.precision)
        self.model = AutoModelForCausalLM.from_pretrained(str(engine_dir), dtype=dtype).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(engine_dir), padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # only pads finished rows, never sampled into text

    def generate(self, prefixes: Sequence[str], sampling: SamplingConfig, batch_size: int) -> Generations:
        if sampling.seed is not None:
            self._torch.manual_seed(sampling.seed)
        lengths = [len(ids) for ids in self.tokenizer(list(prefixes))["input_ids"]]
        # Batch prompts of similar length together: less left padding to compute.
        order = sorted(range(len(prefixes)), key=lengths.__getitem__)
        chains: list[list[str]] = [[] for _ in prefixes]
        generated_tokens = 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            batch_generations = self._generate_batch([prefixes[i] for i in batch], sampling)
            for index, completions in zip(batch, batch_generations.chains):
                chains[index] = completions
            generated_tokens += batch_generations.generated_tokens
        return Generations(chains, generated_tokens)

    def _generate_batch(self, prefixes: list[str], sampling: SamplingConfig) -> Generations:
        inputs = self.tokenizer(prefixes, return_tensors="pt", padding=True)
        with self._torch.inference_mode():
            output = self.model.generate(
                **inputs,
                do_sample=True,
                num_return_sequences=sampling.chains,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                temperature=sampling.temperature,
                max_new_tokens=sampling.max_new_tokens,
                min_new_tokens=sampling.min_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        generated = output[:, inputs["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return Generations(chains_per_prefix(texts, sampling.chains), self._tokens_before_end(generated))

    def _tokens_before_end(self, generated) -> int:
        """Tokens up to each row's first end token (generate pads finished rows after it)."""
        is_end = generated == self.tokenizer.eos_token_id
        ended = is_end.any(dim=1)
        first_end = is_end.int().argmax(dim=1)
        return int(self._torch.where(ended, first_end, generated.shape[1]).sum())


class TensorRTLLMUnavailable(RuntimeError):
    """tensorrt_llm is not importable here: it lives in the GPU image only."""


def import_tensorrt_llm():
    try:
        import tensorrt_llm
    except ImportError as error:
        raise TensorRTLLMUnavailable(
            "The tensorrt-llm backend needs the tensorrt_llm package (TensorRT-LLM 1.x) and an NVIDIA GPU; "
            "it is installed in the GPU job image, not here. On CPU use --backend ctranslate2, or "
            f"--backend transformers for the reference. ({error})"
        ) from error
    return tensorrt_llm


class TensorRTLLMBackend:
    name: ClassVar[str] = "tensorrt-llm"
    precisions: ClassVar[tuple[str, ...]] = ("float16", "bfloat16")
    # Llama-architecture models run on TensorRT-LLM's PyTorch backend; OPT does not.
    supported_model_types: ClassVar[frozenset[str]] = frozenset({"llama", "mistral", "qwen2", "qwen3"})

    @classmethod
    def prepare(cls, merged_model_dir: Path, out_dir: Path, precision: str | None = None) -> EngineInfo:
        """There is no engine to compile with the PyTorch backend: the engine folder is the HF
        checkpoint, validated here by loading it once on the GPU, which also fails early on a
        model the backend cannot serve."""
        chosen = resolve_precision(cls, precision)
        cls.check_supported(Path(merged_model_dir))
        tensorrt_llm = import_tensorrt_llm()
        started = time.perf_counter()
        shutil.copytree(merged_model_dir, out_dir, dirs_exist_ok=True)
        tensorrt_llm.LLM(model=str(out_dir), dtype=chosen).shutdown()
        return _finish(cls, chosen, started, Path(merged_model_dir), Path(out_dir))

    @classmethod
    def check_supported(cls, model_dir: Path) -> None:
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
        if model_type not in cls.supported_model_types:
            raise ValueError(
                f"TensorRT-LLM's PyTorch backend does not serve model_type {model_type!r} "
                f"(supported here: {', '.join(sorted(cls.supported_model_types))}); train a Llama-architecture "
                "model for GPU serving, or serve this one with the ctranslate2 backend"
            )

    def __init__(self, engine_dir: Path, *, precision: str | None = None, threads: int = 0) -> None:
        self._tensorrt_llm = import_tensorrt_llm()
        # The C++ sampler: it seeds each request from SamplingParams.seed. The PyTorch backend's
        # default (TorchSampler) draws from one process-wide generator in the 1.2 release and
        # ignores the per-request seed, so --seed would change nothing on GPU.
        self.precision = resolve_precision(type(self), precision)
        self.llm = self._tensorrt_llm.LLM(model=str(engine_dir), dtype=self.precision, sampler_type="TRTLLMSampler")

    def generate(self, prefixes: Sequence[str], sampling: SamplingConfig, batch_size: int) -> Generations:
        # In-flight batching schedules the requests; n > 1 runs the context phase once per
        # prompt and samples the n sequences from it.
        params = self._tensorrt_llm.SamplingParams(
            n=sampling.chains,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            temperature=sampling.temperature,
            max_tokens=sampling.max_new_tokens,
            min_tokens=sampling.min_new_tokens,
            seed=sampling.seed,
        )
        outputs = self.llm.generate(list(prefixes), params)
        return Generations(
            chains=[[completion.text for completion in output.outputs] for output in outputs],
            generated_tokens=sum(len(completion.token_ids) for output in outputs for completion in output.outputs),
        )


BACKENDS: dict[str, type[GenerationBackend]] = {
    backend.name: backend for backend in (CTranslate2Backend, TransformersBackend, TensorRTLLMBackend)
}


def backend_by_name(name: str) -> type[GenerationBackend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"Unknown inference backend {name!r}; known: {', '.join(BACKENDS)}") from None


def open_engine(engine_dir: Path, backend: str | None = None, *, threads: int = 0) -> GenerationBackend:
    """Load an engine folder. Its manifest names the backend and precision; naming the backend
    instead lets a folder without a manifest serve as is (an HF checkpoint for the reference)."""
    engine_dir = Path(engine_dir)
    # Without a named backend the manifest is required (load says how to make one).
    needs_manifest = backend is None or (engine_dir / ENGINE_MANIFEST).is_file()
    info = EngineInfo.load(engine_dir) if needs_manifest else None
    name = backend or info.backend
    if info is not None and info.backend != name:
        raise ValueError(f"{engine_dir} is a {info.backend} engine, not a {name} one")
    return backend_by_name(name)(engine_dir, precision=info.precision if info else None, threads=threads)

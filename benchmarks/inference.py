"""Inference speed: the CTranslate2 CPU backend against the transformers reference and llama.cpp.

    .venv/bin/python benchmarks/inference.py                     # the default grid
    .venv/bin/python benchmarks/inference.py --batch-sizes 32 --chains 4 --new-tokens 310
    .venv/bin/python benchmarks/inference.py --vocab 0           # the output layer of the id vocabulary only

The backends run the same random-weight Llama (the reference shape: OPT-125M cut to 4
layers, ~69M parameters with OPT's 50k-token output layer), the same prompts in the method's
template (the platform's grouped-digit id tokenizer) and the same chain count, through the
same ``GenerationBackend.generate`` the generate job calls (tokenizing and decoding
included). llama.cpp, the peer engine a team would weigh against CTranslate2, runs the same
checkpoint as Q8_0 GGUF through benchmarks/llama_cpp_peer.py (the ``peer-engines`` extra; the
row says how to install it when it is missing). Every chain is forced to ``--new-tokens`` tokens so that both do equal work.
Each configuration runs in a fresh process, after a warm-up, so peak RSS is its own.

The arithmetic bound: FLOPs one user needs (prompt prefilled once, every chain's tokens
decoded, attention included) over the matmul rate torch measures on this machine for the
backend's precision (int8 for the int8 engine, fp32 for the reference), measured in the same
process just before the timed run, so that a shared machine's changing load hits both alike.
``x bound`` is how many times slower than that limit a backend runs.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from gpu_jobs.inference.backends import CTranslate2Backend, available_cores, exact_compute_type, int8_gemm_saturates, open_engine
from gpu_jobs.inference.engine import EngineInfo, SamplingConfig
from gpu_jobs.inference.random_model import LlamaShape, random_llama, save_checkpoint
from gpu_jobs.job_context import quiet_progress_bars
from gpu_jobs.prompt_format import format_item_ids, generation_prefix
from inference_bounds import MatmulRates, decode_flops, flops_per_user, matmul_rates, prefill_flops  # beside this script

BACKENDS = ("ctranslate2", "transformers", "llama.cpp")
PEER_PRECISION = "int8 (Q8_0)"  # llama.cpp's Q8_0: 8-bit weights, bounded by the int8 matmul rate like CTranslate2's int8


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=2048, help="Llama's 3 MLP matrices at 2048 = OPT's 2 at 3072")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument(
        "--vocab", type=int, default=50272, help="output layer rows (OPT's tokenizer: 50272; 0: the id tokenizer's own, what the platform trains)"
    )
    parser.add_argument("--history-items", type=int, default=51, help="purchase-history ids per prompt (~300 prompt tokens)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per chain, forced (the method allows up to 310)")
    parser.add_argument("--users", type=int, help="users per configuration (default: one full batch)")
    parser.add_argument("--batch-sizes", default="8,32,128", help="users per forward batch, comma-separated")
    parser.add_argument("--chains", default="1,4,10", help="sampled chains per user, comma-separated")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", type=int, default=0, help="default: all available cores")
    parser.add_argument("--workdir", type=Path, help="where the model and engine are written (default: a temp folder)")
    parser.add_argument(
        "--profile", action="store_true", help="also split each backend's time into prefill and per-token decode, against their bounds"
    )
    return parser.parse_args(argv)


def integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


@dataclass(frozen=True)
class Case:
    backend: str
    batch_size: int
    chains: int
    users: int
    new_tokens: int
    threads: int


@dataclass(frozen=True)
class Measurement:
    case: Case
    seconds: float
    generated_tokens: int
    peak_rss_mb: float
    rates: MatmulRates
    load_average: float

    @property
    def users_per_second(self) -> float:
        return self.case.users / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds


def synthetic_prompts(users: int, history_items: int, seed: int = 0) -> list[str]:
    """The method's template with opaque 7-digit ids."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(users):
        history = [rng.randrange(1_000_000, 10_000_000) for _ in range(history_items)]
        prompts.append(
            f"Based on the purchase history: [{format_item_ids(history)}]. What next products will be bought by the user: "
            f"{rng.randrange(10**9)}, geo: {rng.randrange(1000)}, age: {rng.randint(18, 80)}, gender: {rng.randint(0, 1)}, "
            f"purchasing power: {rng.random():.1f}?"
        )
    return [generation_prefix(p) for p in prompts]


def build_engines(args: argparse.Namespace, workdir: Path, prompts: list[str]) -> tuple[Path, Path, LlamaShape, int]:
    from recsys_assets.llm_data.tokenization import train_id_tokenizer

    tokenizer = train_id_tokenizer("grouped", prompts)
    shape = LlamaShape(args.layers, args.hidden, args.intermediate, args.heads, vocab_size=args.vocab or len(tokenizer))
    model = random_llama(tokenizer, shape)
    parameters = sum(p.numel() for p in model.parameters())
    checkpoint = save_checkpoint(model, tokenizer, workdir / "model")
    CTranslate2Backend.prepare(checkpoint, workdir / "ct2")
    if "llama.cpp" in args.backends and peer_missing() is None:
        from llama_cpp_peer import GGUF_NAME, write_gguf

        write_gguf(checkpoint, checkpoint / GGUF_NAME)
    return checkpoint, workdir / "ct2", shape, parameters


def peer_missing() -> str | None:
    """Why the llama.cpp row cannot run here, or None."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama.cpp: not installed (.venv/bin/pip install -e '.[peer-engines]', ~10 min: it compiles llama.cpp)"
    return None


def peak_rss_mb() -> float:
    """This process's own peak: VmHWM starts anew at exec, while getrusage's maxrss carries the
    parent's peak over into a spawned child."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024  # kB


def measure(case: Case, engine_dir: Path, prompts: list[str]) -> Measurement:
    """Runs in a fresh process: warm up on one batch, measure the matmul rates available at
    this moment (a shared machine's share changes), then time all users."""
    backend = open_backend(case, engine_dir, prompts)
    # No seed: a seeded CTranslate2 run reloads its generator, which is not generation time.
    forced = SamplingConfig(chains=case.chains, max_new_tokens=case.new_tokens, min_new_tokens=case.new_tokens)
    warm_up = SamplingConfig(chains=case.chains, max_new_tokens=2, min_new_tokens=2)
    backend.generate(prompts[: case.batch_size], warm_up, case.batch_size)
    rates = matmul_rates(case.threads)
    started = time.perf_counter()
    generations = backend.generate(prompts[: case.users], forced, case.batch_size)
    seconds = time.perf_counter() - started
    return Measurement(case, seconds, generations.generated_tokens, peak_rss_mb(), rates, os.getloadavg()[0])


def open_backend(case: Case, engine_dir: Path, prompts: list[str]):
    if case.backend != "llama.cpp":
        return open_engine(engine_dir, case.backend, threads=case.threads)
    from llama_cpp_peer import LlamaCppBackend

    sequences = case.batch_size * case.chains
    longest = max(prompt_lengths(engine_dir, prompts)) + case.new_tokens
    return LlamaCppBackend(engine_dir, threads=case.threads, max_sequences=sequences, context_tokens=sequences * longest)


def prompt_lengths(checkpoint: Path, prompts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    return [len(ids) for ids in AutoTokenizer.from_pretrained(checkpoint)(prompts)["input_ids"]]


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=quiet_progress_bars) as pool:
        return pool.submit(function, *args).result()


@dataclass(frozen=True)
class Phases:
    """Seconds per user: tokenizing, up to the first token of every chain (the prefill), and
    each further token of every chain (one decode step)."""

    tokenize: float
    prefill: float
    decode_step: float


def profile_phases(case: Case, engine_dir: Path, prompts: list[str]) -> tuple[Phases, MatmulRates]:
    backend = open_backend(case, engine_dir, prompts)
    users = prompts[: case.users]

    def seconds(new_tokens: int) -> float:
        forced = SamplingConfig(chains=case.chains, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        started = time.perf_counter()
        backend.generate(users, forced, case.batch_size)
        return time.perf_counter() - started

    seconds(2)  # warm-up
    started = time.perf_counter()
    backend.tokenizer(users)
    tokenize = time.perf_counter() - started
    rates = matmul_rates(case.threads)
    first, full = seconds(1), seconds(case.new_tokens)
    return Phases(tokenize / len(users), first / len(users), (full - first) / (case.new_tokens - 1) / len(users)), rates


def print_profile(profile: tuple[Phases, MatmulRates], case: Case, precision: str, shape: LlamaShape, prompt_length: float) -> None:
    phases, rates = profile
    peak = rates.for_precision(precision)
    prefill_bound = (prefill_flops(shape, prompt_length) + decode_flops(shape, prompt_length, case.chains, 1)) / peak
    step_bound = decode_flops(shape, prompt_length + case.new_tokens / 2, case.chains, 1) / peak
    print(
        f"{case.backend:<13} batch {case.batch_size}, {case.chains} chains, per user: tokenize {phases.tokenize * 1e3:.2f} ms | "
        f"prefill + first token {phases.prefill * 1e3:.1f} ms ({phases.prefill / prefill_bound:.1f}x its bound) | "
        f"each further token {phases.decode_step * 1e3:.2f} ms ({phases.decode_step / step_bound:.1f}x its bound)",
        flush=True,
    )


COLUMNS = (
    f"{'backend':<13}{'batch':>6}{'chains':>7}{'users':>6}{'users/s':>10}{'tokens/s':>10}{'RSS MB':>8}{'vs ref':>8}"
    f"{'fp32 GF/s':>10}{'int8 GOP/s':>11}{'load':>6}{'bound u/s':>10}{'x bound':>8}"
)


def print_row(m: Measurement, reference: Measurement | None, precision: str, flops: float) -> None:
    """``bound u/s``: the users/s if every FLOP ran at this moment's matmul rate for the
    backend's precision (int8 for the int8 engine, fp32 for the reference)."""
    ratio = f"{m.users_per_second / reference.users_per_second:7.1f}x" if reference and reference is not m else ""
    bound = m.rates.for_precision(precision) / flops
    int8 = f"{m.rates.int8 / 1e9:.0f}" if m.rates.int8 else "-"
    print(
        f"{m.case.backend:<13}{m.case.batch_size:>6}{m.case.chains:>7}{m.case.users:>6}"
        f"{m.users_per_second:>10.3f}{m.tokens_per_second:>10.0f}{m.peak_rss_mb:>8.0f}{ratio:>8}"
        f"{m.rates.fp32 / 1e9:>10.0f}{int8:>11}{m.load_average:>6.1f}{bound:>10.3f}{bound / m.users_per_second:>7.1f}x",
        flush=True,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    quiet_progress_bars()
    threads = args.threads or available_cores()
    batch_sizes, chain_counts = integers(args.batch_sizes), integers(args.chains)
    # The reference first in every configuration: the others' rows show their speed-up over it.
    backends = sorted(args.backends.split(","), key=lambda name: name != "transformers")
    prompts = synthetic_prompts(max(args.users or 0, *batch_sizes), args.history_items)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="inference-bench-"))

    checkpoint, ct2_dir, shape, parameters = build_engines(args, workdir, prompts)
    if "llama.cpp" in backends and (missing := peer_missing()):
        print(missing)
        backends.remove("llama.cpp")
    engines = {"ctranslate2": ct2_dir, "transformers": checkpoint, "llama.cpp": checkpoint}
    # What CTranslate2 computes in here: float32 where this CPU's int8 products saturate.
    ct2_precision = exact_compute_type(EngineInfo.load(ct2_dir).precision, int8_gemm_saturates())
    precisions = {"ctranslate2": ct2_precision, "transformers": "float32", "llama.cpp": PEER_PRECISION}
    precisions = {name: precisions[name] for name in backends}
    lengths = prompt_lengths(checkpoint, prompts)
    prompt_length = sum(lengths) / len(lengths)
    print(
        f"model: Llama {shape.layers} layers, hidden {shape.hidden}, MLP {shape.intermediate}, vocab {shape.vocab_size}: "
        f"{parameters / 1e6:.1f}M parameters | prompt {prompt_length:.0f} tokens, {args.new_tokens} new tokens per chain | "
        f"{threads} threads | {', '.join(f'{name} {precision}' for name, precision in precisions.items())}"
    )
    print(COLUMNS)
    for batch_size in batch_sizes:
        for chains in chain_counts:
            reference = None
            flops = flops_per_user(shape, prompt_length, chains, args.new_tokens)
            for backend in backends:
                case = Case(backend, batch_size, chains, args.users or batch_size, args.new_tokens, threads)
                measurement = in_fresh_process(measure, case, engines[backend], prompts)
                print_row(measurement, reference, precisions[backend], flops)
                if backend == "transformers":
                    reference = measurement
                if args.profile:
                    profile = in_fresh_process(profile_phases, case, engines[backend], prompts)
                    print_profile(profile, case, precisions[backend], shape, prompt_length)
    print(f"engines in {workdir}")


if __name__ == "__main__":
    main()

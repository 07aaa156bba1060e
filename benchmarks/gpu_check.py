"""One-GPU check: fine-tune the reference-size model with LoRA, then time sampled generation.

    python benchmarks/gpu_check.py            # a machine with one NVIDIA GPU: under 8 minutes
    python benchmarks/gpu_check.py --tiny     # CPU smoke run of the same code, well under a minute

Builds the project's tiny Llama (gpu_jobs.modeling) at the reference size: 4 layers, hidden 768,
12 heads, the 8000-token BPE id vocabulary of the project's default tokenizer, and an MLP sized
to ~67M parameters (OPT-125M cut to 4 layers, the reference's model). Fine-tunes it with LoRA
through gpu_jobs.training_loop.fit (bf16 autocast) on synthetic prompts in the project's
format, then samples chains per user with transformers `generate`: a static KV cache with
torch.compile, falling back to plain batched generate. Seconds per user are set beside the
reference system's 0.023 s/user (A800, TensorRT-LLM). Needs torch, transformers, peft, numpy
and pandas only: no network, no dagster. The last line is `RESULT {json}` for a caller to parse.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports: the budget covers the whole process

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

# A GPU machine gets the tree, not an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from gpu_jobs.encoding import batches, encode  # noqa: E402
from gpu_jobs.inference.engine import SamplingConfig, chains_per_prefix  # noqa: E402
from gpu_jobs.modeling import base_model, parameter_counts, with_lora  # noqa: E402
from gpu_jobs.prompt_format import format_item_ids, generation_prefix, parse_item_ids  # noqa: E402
from gpu_jobs.train_config import TrainingConfig  # noqa: E402
from gpu_jobs.training_loop import autocast_dtype, fit, move, seed_everything  # noqa: E402
# The product's prompt template and id tokenizer: these modules need only tokenizers and transformers
# (the packages' __init__ files are empty), so the check runs where dagster is not installed.
from recsys_assets.llm_data.prompts import build_prompt  # noqa: E402
from recsys_assets.llm_data.tokenization import train_id_tokenizer  # noqa: E402

REFERENCE_S_PER_USER = 0.023  # the reference system: A800, TensorRT-LLM
REFERENCE_PARAMS = 67_000_000
# Share of the budget left after setup that training may use: the generation figure is the one
# compared with the reference, so it gets the larger part.
TRAIN_SHARE = 0.35


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    heads: int
    vocab: int  # BPE vocabulary asked of the tokenizer trainer
    intermediate: int  # 0: sized so the model has REFERENCE_PARAMS
    items: int  # catalogue the synthetic histories draw from
    history: int  # most ids per prompt
    target: int  # ids per training target
    val_examples: int
    steps: int
    train_batch: int
    users: int
    chains: int
    new_tokens: int
    gen_batch: int


FULL = Size(4, 768, 12, 8000, 0, 100_000, 50, 20, 256, 300, 32, 4096, 4, SamplingConfig().max_new_tokens, 256)
TINY = Size(2, 64, 4, 512, 256, 3000, 20, 10, 32, 20, 8, 16, 4, 12, 8)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 2 layers x 64 wide, 20 steps, 16 users, 4 chains x 12 tokens, fp32, no compile")
    parser.add_argument("--steps", type=int, help=f"training steps (default {FULL.steps}; tiny {TINY.steps}); the budget may cut them")
    parser.add_argument("--train-batch", type=int, help=f"examples per training step (default {FULL.train_batch}; tiny {TINY.train_batch})")
    parser.add_argument("--users", type=int, help=f"users to generate for (default {FULL.users}; tiny {TINY.users}); the budget may cut them")
    parser.add_argument("--chains", type=int, help=f"sampled chains per user (default {FULL.chains})")
    parser.add_argument(
        "--new-tokens", type=int,
        help=f"tokens per chain, forced (no early end) so every run does the same work (default {FULL.new_tokens}, the method's maximum; tiny {TINY.new_tokens})",
    )  # fmt: skip
    parser.add_argument("--gen-batch", type=int, help=f"users per generate call (default {FULL.gen_batch}; tiny {TINY.gen_batch})")
    parser.add_argument(
        "--budget-s", type=float, default=450.0,
        help="seconds for the whole run, imports included (default 450, under 8 minutes): training is cut to its share, "
        "generation stops before a batch that would overrun; the cuts are printed",
    )  # fmt: skip
    parser.add_argument("--no-compile", action="store_true", help="skip the static-cache + torch.compile path: plain batched generate only")
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the model's initial weights and the sampling")
    args = parser.parse_args(argv)
    size = TINY if args.tiny else FULL
    for name in ("steps", "train_batch", "users", "chains", "new_tokens", "gen_batch"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(size, name))
    return args


def synthetic_examples(rng: np.random.Generator, size: Size, users: range) -> pd.DataFrame:
    """Prompts with random purchase histories (popular items more often, as in a marketplace) and targets."""
    catalogue = rng.choice(np.arange(100_000, 1_000_000), size.items, replace=False)
    popularity = 1.0 / np.arange(1, size.items + 1) ** 0.8
    cumulative = np.cumsum(popularity) / popularity.sum()  # sampled by search: rng.choice(p=) redoes this per call
    rows = []
    for user in users:
        n = int(rng.integers(1, size.history + 1)) + size.target
        bought = catalogue[np.minimum(np.searchsorted(cumulative, rng.random(n)), size.items - 1)]
        prompt = build_prompt(bought[size.target :], user, geo=rng.choice(["north", "south", "east", "west"]),
                              age=int(rng.integers(18, 75)), gender=rng.choice(["female", "male"]), purchasing_power=float(rng.random()))  # fmt: skip
        rows.append((prompt, format_item_ids(bought[: size.target])))
    return pd.DataFrame(rows, columns=["prompt", "target"])


def intermediate_size(size: Size, vocab: int) -> int:
    """MLP width that brings the model to REFERENCE_PARAMS: untied embeddings and output layer (as
    tiny_llama_config builds them) and attention are fixed; Llama's 3 MLP matrices fill the rest."""
    if size.intermediate:
        return size.intermediate
    fixed = 2 * vocab * size.hidden + size.layers * 4 * size.hidden**2
    return max(64, round((REFERENCE_PARAMS - fixed) / (3 * size.hidden * size.layers) / 64) * 64)


def seconds_per_step(model, train, config: TrainingConfig, pad_id: int, device: torch.device) -> float:
    """Forward + backward on real batches, no update: sizes the run to the budget before fit starts."""
    dtype = autocast_dtype(config.precision, device)
    times = []
    for batch in batches(train, config.batch_size, pad_id, list(range(min(len(train.input_ids), 3 * config.batch_size)))):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss = model(**move(batch, device)).loss
        loss.backward()
        loss.item()
        times.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return min(times[1:] or times)  # the first pays for CUDA's start-up


def generate_batch(model, tokenizer, prefixes: list[str], width: int, sampling: SamplingConfig, path: str, compile_ok: bool):
    # One prompt width and one batch size for every call: the static cache and the compiled
    # decode step keep their shapes, so they are built once.
    inputs = tokenizer(prefixes, padding="max_length", max_length=width, return_tensors="pt")
    options = {"cache_implementation": "static", "disable_compile": not compile_ok} if path == "static" else {}
    with torch.inference_mode():
        output = model.generate(
            input_ids=inputs["input_ids"].to(model.device), attention_mask=inputs["attention_mask"].to(model.device),
            do_sample=True, num_return_sequences=sampling.chains, top_k=sampling.top_k, top_p=sampling.top_p,
            temperature=sampling.temperature, max_new_tokens=sampling.max_new_tokens, min_new_tokens=sampling.min_new_tokens,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **options,
        )  # fmt: skip
    return output[:, width:].cpu()  # .cpu() waits for the device: batch times are real


def main(argv=None) -> dict:
    args = parse_args(argv)
    size = TINY if args.tiny else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"device {device} | torch {torch.__version__} | transformers {transformers.__version__} | peft {peft.__version__} | GPU {gpu}")
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="  fit: %(message)s")
    log = logging.getLogger("gpu_check")
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    cuts: list[str] = []

    n_train = min(args.steps * args.train_batch, 8192)  # fit runs more epochs past this
    frames = [synthetic_examples(rng, size, range(start, start + n)) for start, n in ((0, n_train), (10**6, size.val_examples), (2 * 10**6, args.users))]
    started = time.perf_counter()
    tokenizer = train_id_tokenizer("bpe", [t for frame in frames[:2] for t in (*frame.prompt, *frame.target)], bpe_vocab_size=size.vocab)
    print(f"tokenizer: BPE id vocabulary of {len(tokenizer)} tokens from {n_train + size.val_examples} synthetic examples ({time.perf_counter() - started:.1f} s)")

    config = TrainingConfig(
        tiny_hidden_size=size.hidden, tiny_layers=size.layers, tiny_heads=size.heads,
        tiny_intermediate_size=intermediate_size(size, len(tokenizer)), batch_size=args.train_batch, max_steps=args.steps,
        epochs=math.ceil(args.steps * args.train_batch / n_train), eval_every=args.steps, val_examples=size.val_examples,
        precision="bf16" if device.type == "cuda" and not args.tiny else "fp32", seed=args.seed,
    )  # fmt: skip
    train, val = encode(frames[0], tokenizer, config.max_length), encode(frames[1], tokenizer, config.max_length)
    model, train_embeddings = base_model(config, tokenizer)
    params, _ = parameter_counts(model)
    model = with_lora(model, config, train_embeddings).to(device)
    _, trainable = parameter_counts(model)
    print(
        f"model: Llama {size.layers} layers, hidden {size.hidden}, {size.heads} heads, MLP {config.tiny_intermediate_size}, "
        f"vocab {len(tokenizer)}: {params:,} parameters; LoRA r={config.lora_r} + embeddings: {trainable:,} trainable"
    )

    step_s = seconds_per_step(model, train, config, tokenizer.pad_token_id, device)
    train_budget = max(0.0, TRAIN_SHARE * (args.budget_s - (time.perf_counter() - START)))
    steps = max(1, min(args.steps, int(train_budget / (1.2 * step_s))))  # 1.2: the update and the two validations
    if steps < args.steps:
        cuts.append(f"training {steps}/{args.steps} steps ({step_s:.3f} s/step, {train_budget:.0f} s for training)")
        config = dataclasses.replace(config, max_steps=steps, eval_every=steps)
    history = fit(model, train, val, config, tokenizer.pad_token_id, device, log)
    steps_per_s, tokens_per_s = history.steps / history.train_seconds, history.tokens / history.train_seconds
    loss_first, loss_last = history.train[0][1], history.train[-1][1]
    val_start, val_end = history.val[0][1], history.val[-1][1]
    print(
        f"train: {history.steps} steps x {args.train_batch} examples, {config.precision}: {steps_per_s:.2f} steps/s, "
        f"{tokens_per_s:,.0f} tokens/s; loss {loss_first:.3f} -> {loss_last:.3f} (val {val_start:.3f} -> {val_end:.3f})"
    )

    model = model.merge_and_unload().eval()  # a plain Llama, as inference serves it
    if config.precision == "bf16":
        model = model.to(torch.bfloat16)
    tokenizer.padding_side = "left"
    prefixes = [generation_prefix(p) for p in frames[2].prompt]
    width = max(len(ids) for ids in tokenizer(prefixes)["input_ids"])
    sampling = SamplingConfig(chains=args.chains, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    batch_of = lambda start: (prefixes[start : start + args.gen_batch] * args.gen_batch)[: args.gen_batch]  # noqa: E731 (padded to full)
    compile_ok = device.type == "cuda" and not args.tiny
    torch.manual_seed(args.seed)
    for path in ["plain"] if args.no_compile else ["static", "plain"]:
        try:
            started = time.perf_counter()
            generate_batch(model, tokenizer, batch_of(0), width, sampling, path, compile_ok)
            warmup_s = time.perf_counter() - started
            break
        except Exception as error:  # noqa: BLE001 (any failure of the fast path falls back)
            if path == "plain":
                raise
            print(f"generate: static cache + compile failed ({type(error).__name__}: {str(error)[:300]}); falling back to plain batched generate")
            torch._dynamo.reset()
    compiled = path == "static" and hasattr(model, "_compiled_call")  # generate compiles the decode step lazily, here
    path_name = {"static": "static-cache+compile" if compiled else "static-cache (compile off)", "plain": "plain batched generate"}[path]
    print(f"generate: path {path_name}; warm-up batch {warmup_s:.1f} s (compile included, not timed), prompts left-padded to {width} tokens")

    chains, estimate, gen_started = [], warmup_s, time.perf_counter()
    for start in range(0, len(prefixes), args.gen_batch):
        if chains and time.perf_counter() - START + estimate > args.budget_s:
            cuts.append(f"generation {len(chains)}/{len(prefixes)} users (last batch took {estimate:.1f} s)")
            break
        batch_started = time.perf_counter()
        ids = generate_batch(model, tokenizer, batch_of(start), width, sampling, path, compile_ok)
        estimate = time.perf_counter() - batch_started
        real = len(prefixes[start : start + args.gen_batch])
        chains += chains_per_prefix(tokenizer.batch_decode(ids[: real * args.chains], skip_special_tokens=True), args.chains)
    gen_s = time.perf_counter() - gen_started
    s_per_user = gen_s / len(chains)
    complete = sum(len(c) == args.chains and all(text.strip() for text in c) for c in chains)
    ids_per_chain = sum(len(parse_item_ids(text)) for c in chains for text in c) / (len(chains) * args.chains)
    print(
        f"generate: {len(chains)} users x {args.chains} chains x {args.new_tokens} tokens in {gen_s:.1f} s, "
        f"{len(chains) * args.chains * args.new_tokens / gen_s:,.0f} tokens/s, {ids_per_chain:.1f} ids/chain; {complete} users with every chain"
    )
    print(f"seconds per user: {s_per_user:.4f} vs reference {REFERENCE_S_PER_USER} (A800, TensorRT-LLM): {s_per_user / REFERENCE_S_PER_USER:.2f}x")
    total_s = time.perf_counter() - START
    print(f"cut to fit the budget: {'; '.join(cuts) or 'nothing'}; total {total_s:.1f} s (budget {args.budget_s:.0f} s)")
    result = {
        "device": device.type, "gpu": gpu, "torch": torch.__version__, "tiny": args.tiny, "params": params, "trainable_params": trainable,
        "vocab": len(tokenizer), "precision": config.precision, "train_steps": history.steps, "train_steps_requested": args.steps,
        "steps_per_s": round(steps_per_s, 3), "tokens_per_s": round(tokens_per_s, 1), "loss_first": round(loss_first, 4),
        "loss_last": round(loss_last, 4), "val_loss_start": round(val_start, 4), "val_loss_end": round(val_end, 4),
        "users": len(chains), "users_requested": args.users, "users_with_all_chains": complete, "chains": args.chains,
        "new_tokens": args.new_tokens, "gen_batch": args.gen_batch, "warmup_s": round(warmup_s, 2), "generation_s": round(gen_s, 2),
        "seconds_per_user": round(s_per_user, 6), "reference_s_per_user": REFERENCE_S_PER_USER,
        "ratio_to_reference": round(s_per_user / REFERENCE_S_PER_USER, 3), "generation_path": path_name, "cuts": cuts,
        "total_s": round(total_s, 1),
    }  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

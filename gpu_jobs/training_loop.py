"""The optimizer loop: AdamW with warmup and cosine decay, mixed precision, periodic validation."""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from gpu_jobs.encoding import IGNORE, Examples, batches
from gpu_jobs.train_config import TrainingConfig

LOG_EVERY = 10


@dataclass
class History:
    train: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss)
    val: list[tuple[int, float]] = field(default_factory=list)  # (step, loss over the val examples)
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision compute dtype, or None for plain fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None  # CPU autocast is slower than fp32 on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def move(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in batch.items()}


def target_tokens(batch: dict) -> int:
    # The model shifts labels by one: the first position is never predicted.
    return int((batch["labels"][:, 1:] != IGNORE).sum())


@torch.no_grad()
def evaluate(model, examples: Examples, config: TrainingConfig, pad_id: int, device, dtype) -> float:
    """Mean loss per target token over the validation examples."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches(examples, config.batch_size, pad_id, list(range(len(examples.input_ids)))):
        batch = move(batch, device)
        with _autocast(device, dtype):
            loss = model(**batch).loss
        n = target_tokens(batch)
        total, count = total + float(loss) * n, count + n
    model.train()
    return total / count


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """LR factor: linear warmup, then cosine down to 10% of the peak."""
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def training_steps(examples: int, config: TrainingConfig) -> tuple[int, int]:
    """(optimizer steps per epoch, steps of the whole run: every epoch, cut to max_steps when set)."""
    steps_per_epoch = math.ceil(examples / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    return steps_per_epoch, min(total_steps, config.max_steps) if config.max_steps else total_steps


def fit(model, train: Examples, val: Examples, config: TrainingConfig, pad_id: int, device, log) -> History:
    dtype = autocast_dtype(config.precision, device)
    steps_per_epoch, total_steps = training_steps(len(train.input_ids), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, config.warmup_ratio))
    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    shuffler = torch.Generator().manual_seed(config.seed)
    history = History()
    history.val.append((0, evaluate(model, val, config, pad_id, device, dtype)))
    log.info(f"{total_steps} steps ({steps_per_epoch}/epoch), val loss before training {history.val[0][1]:.4f}")
    model.train()
    while history.steps < total_steps:
        order = torch.randperm(len(train.input_ids), generator=shuffler).tolist()
        for batch in batches(train, config.batch_size, pad_id, order):
            started = time.perf_counter()
            batch = move(batch, device)
            with _autocast(device, dtype):
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            loss_value = loss.item()  # waits for the device, so the step time below is real on GPUs
            history.train_seconds += time.perf_counter() - started
            history.tokens += int(batch["attention_mask"].sum())
            history.steps += 1
            history.train.append((history.steps, loss_value))
            report_progress(model, history, total_steps, val, config, pad_id, device, dtype, log)
            if history.steps == total_steps:
                break
    return history


def report_progress(model, history: History, total_steps: int, val, config, pad_id, device, dtype, log) -> None:
    step = history.steps
    if step % config.eval_every == 0 or step == total_steps:
        history.val.append((step, evaluate(model, val, config, pad_id, device, dtype)))
    if step % LOG_EVERY == 0 or step == total_steps:
        recent = [loss for _, loss in history.train[-LOG_EVERY:]]
        log.info(
            f"step {step}/{total_steps} train loss {sum(recent) / len(recent):.4f} "
            f"val loss {history.val[-1][1]:.4f} (at step {history.val[-1][0]}) "
            f"{history.tokens / history.train_seconds:.0f} tokens/s"
        )

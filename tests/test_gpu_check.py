"""benchmarks/gpu_check.py in its CPU tiny mode: the prepared GPU check must still run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY_STEPS, TINY_USERS = 20, 16  # gpu_check.TINY


def run_tiny() -> dict:
    """The parsed RESULT line of ``gpu_check.py --tiny``, forced onto the CPU even where a GPU is visible."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--tiny"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, f"gpu_check.py --tiny exited {completed.returncode}:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line:\n{completed.stdout[-3000:]}"
    print(completed.stdout)
    return json.loads(lines[0].removeprefix("RESULT "))


def test_tiny_run_trains_and_generates_for_every_user_on_cpu():
    result = run_tiny()
    print(f"loss {result['loss_first']} -> {result['loss_last']}, val {result['val_loss_start']} -> {result['val_loss_end']}")
    assert result["device"] == "cpu"
    assert result["train_steps"] == result["train_steps_requested"] == TINY_STEPS
    assert result["loss_last"] < result["loss_first"]
    assert result["val_loss_end"] < result["val_loss_start"]
    assert result["users"] == result["users_requested"] == TINY_USERS
    assert result["users_with_all_chains"] == TINY_USERS
    assert result["seconds_per_user"] > 0
    assert abs(result["ratio_to_reference"] - result["seconds_per_user"] / result["reference_s_per_user"]) < 1e-3
    assert result["cuts"] == []
    assert result["steps_per_s"] > 0 and result["tokens_per_s"] > 0 and result["params"] > 0
    assert result["generation_path"] in {"static-cache (compile off)", "static-cache+compile", "plain batched generate"}

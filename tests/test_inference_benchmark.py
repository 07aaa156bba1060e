"""benchmarks/inference.py on a tiny model: the speed table keeps running (the README's inference
figures come from it), and the llama.cpp peer's sampler keeps to top-k and top-p."""

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_jobs.inference.engine import SamplingConfig  # noqa: E402
from llama_cpp_peer import sample  # noqa: E402


def test_the_peer_sampler_keeps_to_top_k_and_top_p():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 2000, dtype=np.float32))
    picks = sample(logits, SamplingConfig(top_k=2, top_p=1.0, temperature=1.0), rng)
    assert set(picks) == {0, 1} and 0.55 < (picks == 0).mean() < 0.70  # 0.5 / (0.5 + 0.3)
    picks = sample(logits, SamplingConfig(top_k=4, top_p=0.7, temperature=1.0), rng)
    assert set(picks) == {0, 1}  # 0.5 < 0.7: the second token completes the nucleus
    assert set(sample(logits, SamplingConfig(top_k=1), rng)) == {0}


def test_the_speed_table_runs_on_a_tiny_model(tmp_path):
    command = [
        sys.executable, "benchmarks/inference.py", "--layers", "1", "--hidden", "64", "--intermediate", "128", "--heads", "4",
        "--vocab", "0", "--history-items", "5", "--new-tokens", "4", "--batch-sizes", "2", "--chains", "2", "--users", "4",
        "--workdir", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["ctranslate2"], ["transformers"], ["llama.cpp"])]
    backends = {row[0] for row in rows}
    assert {"ctranslate2", "transformers"} <= backends
    # llama.cpp runs where the peer-engines extra is installed; elsewhere the table says how to get it.
    assert "llama.cpp" in backends or "peer-engines" in result.stdout
    assert all(float(row[4]) > 0 for row in rows)  # users/s


def test_the_peer_gguf_computes_what_the_checkpoint_computes(tmp_path):
    """The GGUF the llama.cpp row runs is the same model: its first-token logits equal transformers' (F32)."""
    import pytest

    pytest.importorskip("llama_cpp", reason="the peer-engines extra is not installed (it compiles llama.cpp)")
    import torch

    from gpu_jobs.inference.random_model import LlamaShape, random_llama, save_checkpoint
    from llama_cpp_peer import GGUF_NAME, LlamaCppBackend, write_gguf
    from recsys_assets.llm_data.tokenization import train_id_tokenizer

    prompt = "Based on the purchase history: [1234567, 7654321]. What next products will be bought by the user: 5? Answer: "
    tokenizer = train_id_tokenizer("grouped", [prompt])
    model = random_llama(tokenizer, LlamaShape(layers=2, hidden=64, intermediate=128, heads=4))
    checkpoint = save_checkpoint(model, tokenizer, tmp_path / "model")
    write_gguf(checkpoint, checkpoint / GGUF_NAME, quantize=False)
    peer = LlamaCppBackend(checkpoint, threads=1, max_sequences=1, context_tokens=256)
    ids = tokenizer(prompt)["input_ids"]
    peer._decode(ids, range(len(ids)), [0] * len(ids), [False] * (len(ids) - 1) + [True])
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0, -1].numpy()
    assert np.abs(peer._logits(1)[0] - expected).max() < 1e-3 * np.abs(expected).max()

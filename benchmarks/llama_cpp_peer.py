"""llama.cpp, through llama-cpp-python, as the peer CPU engine of benchmarks/inference.py.

The same checkpoint the other backends run, written as GGUF (Q8_0 weights beside CTranslate2's
int8, norms in F32), the same prompts tokenized by the same tokenizer, and the method's N
sampled chains per user: each batch of users is prefilled once (one sequence per user), the
prompt's KV cache is copied to the user's other chains, and every decode step is one llama.cpp
batch of one token per chain. Sampling (temperature, top-k, top-p) runs on the logits in
numpy, as the platform's backends do it. It is a benchmark peer, not a serving backend: the
product's engines stay CTranslate2 (CPU) and TensorRT-LLM (GPU).

Needs the ``peer-engines`` extra (llama-cpp-python builds llama.cpp from source: ~10 minutes
on 2 cores): ``.venv/bin/pip install -e '.[peer-engines]'``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gpu_jobs.inference.engine import Generations, SamplingConfig, chains_per_prefix

GGUF_NAME = "model-q8_0.gguf"


def write_gguf(checkpoint: Path, out: Path, quantize: bool = True) -> Path:
    """The transformers Llama checkpoint as a GGUF file llama.cpp loads (its tensor names and
    rotary layout, as llama.cpp's own convert_hf_to_gguf.py writes them)."""
    import gguf
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    config, tokenizer = model.config, AutoTokenizer.from_pretrained(checkpoint)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config.hidden_size // heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    # Token texts only: the benchmark tokenizes with the model's own tokenizer and feeds ids.
    tokens = [tokenizer.convert_ids_to_tokens(i) or f"<extra_{i}>" for i in range(len(tokenizer))]
    tokens += [f"<extra_{i}>" for i in range(len(tokens), config.vocab_size)]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([gguf.TokenType.NORMAL] * len(tokens))
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)

    def add(name: str, tensor, permute_heads: int | None = None) -> None:
        data = tensor.detach().numpy().astype(np.float32)
        if permute_heads:  # transformers' rotary halves -> llama.cpp's interleaved pairs
            data = data.reshape(permute_heads, 2, data.shape[0] // permute_heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)
        if quantize and data.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data)

    add("token_embd.weight", model.model.embed_tokens.weight)
    for index, layer in enumerate(model.model.layers):
        block, attention, mlp = f"blk.{index}", layer.self_attn, layer.mlp
        add(f"{block}.attn_norm.weight", layer.input_layernorm.weight)
        add(f"{block}.attn_q.weight", attention.q_proj.weight, heads)
        add(f"{block}.attn_k.weight", attention.k_proj.weight, kv_heads)
        add(f"{block}.attn_v.weight", attention.v_proj.weight)
        add(f"{block}.attn_output.weight", attention.o_proj.weight)
        add(f"{block}.ffn_norm.weight", layer.post_attention_layernorm.weight)
        add(f"{block}.ffn_gate.weight", mlp.gate_proj.weight)
        add(f"{block}.ffn_up.weight", mlp.up_proj.weight)
        add(f"{block}.ffn_down.weight", mlp.down_proj.weight)
    add("output_norm.weight", model.model.norm.weight)
    if not config.tie_word_embeddings:
        add("output.weight", model.lm_head.weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def sample(logits: np.ndarray, sampling: SamplingConfig, rng: np.random.Generator) -> np.ndarray:
    """One token per row: temperature, then the top-k, then the smallest set holding top-p of the mass."""
    k = min(sampling.top_k or logits.shape[1], logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(logits, top, axis=1) / sampling.temperature
    order = np.argsort(-scores, axis=1)
    top, scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(scores, order, axis=1)
    probabilities = np.exp(scores - scores[:, :1])
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    outside = np.cumsum(probabilities, axis=1) - probabilities > sampling.top_p
    probabilities[outside] = 0
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    picks = (probabilities.cumsum(axis=1) > rng.random((len(top), 1))).argmax(axis=1)
    return top[np.arange(len(top)), picks]


class LlamaCppBackend:
    name = "llama.cpp"

    def __init__(self, engine_dir: Path, *, threads: int, max_sequences: int, context_tokens: int) -> None:
        import llama_cpp
        from transformers import AutoTokenizer

        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())
        model_params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(Path(engine_dir) / GGUF_NAME).encode(), model_params)
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = context_tokens
        # One llama_decode takes a whole batch of prompts (n_batch); llama.cpp computes it in 512-token pieces.
        context_params.n_batch, context_params.n_ubatch = context_tokens, min(context_tokens, 512)
        context_params.n_seq_max = max_sequences
        context_params.n_threads = context_params.n_threads_batch = threads
        context_params.kv_unified = True  # every sequence in one cache: a user's chains copy its prompt
        self.context = llama_cpp.llama_init_from_model(self.model, context_params)
        self.memory = llama_cpp.llama_get_memory(self.context)
        self.vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.tokenizer = AutoTokenizer.from_pretrained(str(engine_dir))
        self.rng = np.random.default_rng(0)

    def _decode(self, tokens: Sequence[int], positions: Sequence[int], sequences: Sequence[int], wants_logits: Sequence[bool]) -> None:
        batch = self.lib.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, (token, position, sequence, logits) in enumerate(zip(tokens, positions, sequences, wants_logits)):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = int(token), int(position), 1
                batch.seq_id[i][0], batch.logits[i] = int(sequence), bool(logits)
            batch.n_tokens = len(tokens)
            if self.lib.llama_decode(self.context, batch) != 0:
                raise RuntimeError("llama_decode failed (context too small for the batch?)")
        finally:
            self.lib.llama_batch_free(batch)

    def _logits(self, rows: int) -> np.ndarray:
        pointer = self.lib.llama_get_logits(self.context)
        return np.ctypeslib.as_array(pointer, shape=(rows, self.vocab)).copy()

    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> tuple[list[list[list[int]]], int]:
        self.lib.llama_memory_clear(self.memory, True)
        tokens, positions, sequences, last = [], [], [], []
        for user, ids in enumerate(prompts):
            tokens += ids
            positions += range(len(ids))
            sequences += [user * sampling.chains] * len(ids)
            last += [False] * (len(ids) - 1) + [True]
        self._decode(tokens, positions, sequences, last)
        first_logits = self._logits(len(prompts))
        for user, ids in enumerate(prompts):
            for chain in range(1, sampling.chains):
                self.lib.llama_memory_seq_cp(self.memory, user * sampling.chains, user * sampling.chains + chain, -1, -1)
        logits = np.repeat(first_logits, sampling.chains, axis=0)
        lengths = np.repeat([len(ids) for ids in prompts], sampling.chains)
        chains = [[] for _ in range(len(prompts) * sampling.chains)]
        alive = np.ones(len(chains), dtype=bool)
        eos = self.tokenizer.eos_token_id
        for step in range(sampling.max_new_tokens):
            if step < sampling.min_new_tokens:
                logits[:, eos] = -np.inf
            picked = sample(logits, sampling, self.rng)
            for row in np.flatnonzero(alive):
                if picked[row] == eos:
                    alive[row] = False
                else:
                    chains[row].append(int(picked[row]))
            rows = np.flatnonzero(alive)
            if not len(rows) or step == sampling.max_new_tokens - 1:
                break
            self._decode(picked[rows], lengths[rows] + step, rows, [True] * len(rows))
            logits = np.full((len(chains), self.vocab), -np.inf, dtype=np.float32)
            logits[rows] = self._logits(len(rows))
        per_user = [chains[user * sampling.chains : (user + 1) * sampling.chains] for user in range(len(prompts))]
        return per_user, sum(map(len, chains))

    def generate(self, prefixes: Sequence[str], sampling: SamplingConfig, batch_size: int) -> Generations:
        encoded = self.tokenizer(list(prefixes))["input_ids"]
        texts, generated = [], 0
        for start in range(0, len(encoded), batch_size):
            per_user, tokens = self._generate_batch(encoded[start : start + batch_size], sampling)
            texts += [text for user in per_user for text in self.tokenizer.batch_decode(user, skip_special_tokens=True)]
            generated += tokens
        return Generations(chains_per_prefix(texts, sampling.chains), generated)


def _quiet(level, text, user_data) -> None:
    """llama.cpp logs every load and context creation to stderr; the benchmark prints its own table."""


try:
    import llama_cpp as _llama_cpp

    _QUIET = _llama_cpp.llama_log_callback(_quiet)
except ImportError:  # the benchmark says how to install it when asked for this backend
    _QUIET = None

"""Inference engines (CTranslate2 on CPU, TensorRT-LLM on GPU, transformers as the reference)
and the merging of sampled chains into ranked recommendations."""

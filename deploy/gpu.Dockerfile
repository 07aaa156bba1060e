# The GPU image: what runs inside the GPU pods (gpu_jobs/: train, engine build, generate).
#
# Build from the repository root:
#
#   docker build -f deploy/gpu.Dockerfile -t <registry>/recsys-gpu:$(git rev-parse --short HEAD) .
#
# and point the orchestrator at it: RECSYS_GPU_MODE=kubernetes RECSYS_GPU_IMAGE=<that tag>
# (resources/gpu_jobs.py). The pods run `python3 -m gpu_jobs.<job> ...` with the artifact
# store's volume mounted; they need no Dagster instance, only dagster-pipes.
#
# Base: NVIDIA's TensorRT-LLM release container. It carries CUDA, cuDNN, NCCL, MPI, a torch
# build matched to TensorRT-LLM, transformers, and tensorrt_llm itself. Those versions must
# match exactly (tensorrt_llm wheels are built against one torch/CUDA pair), so the image keeps
# NVIDIA's tested set and only adds what the jobs need around it. Pick the release whose CUDA
# the cluster's driver supports (the CUDA forward-compatibility table), and pin it.
ARG TRTLLM_IMAGE=nvcr.io/nvidia/tensorrt-llm/release:1.2.0
FROM ${TRTLLM_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_DISABLE_TELEMETRY=1

# Freeze the base's GPU stack: the installs below may add packages, never swap torch,
# tensorrt-llm or the NVIDIA libraries for other builds. `pip list --format=freeze`, not
# `pip freeze`: the release image installs tensorrt_llm from a local wheel, which `pip freeze`
# prints as `tensorrt_llm @ file://...` (no version to pin, and the check below would stop).
RUN pip list --format=freeze | grep -iE '^(torch|torchvision|tensorrt|tensorrt[-_]llm|nvidia-[a-z0-9-]+|triton|flashinfer-python)==' \
        > /opt/gpu-constraints.txt \
    && grep -iE '^torch==' /opt/gpu-constraints.txt \
    && grep -iE '^tensorrt[-_]llm==' /opt/gpu-constraints.txt

# What gpu_jobs imports beyond the base, at the project's versions (pyproject.toml). torch is
# not in this list on purpose: the project pins the CPU build for laptops and CI.
RUN pip install -c /opt/gpu-constraints.txt \
        "dagster-pipes==1.13.27" \
        "transformers>=4.50" \
        "peft>=0.15" \
        "tokenizers>=0.21" \
        "safetensors" \
        "accelerate" \
        "ctranslate2>=4.5" \
        "numpy>=1.26" \
        "pandas>=2.2" \
        "pyarrow>=17" \
        "matplotlib>=3.8"

# The project itself, without its orchestrator dependencies (dagster, dbt, duckdb, the CPU
# torch pin): the pods only run gpu_jobs.
WORKDIR /opt/recsys
COPY pyproject.toml README.md ./
COPY gpu_jobs ./gpu_jobs
COPY recsys_assets ./recsys_assets
COPY resources ./resources
COPY partitions ./partitions
COPY synthetic_marketplace ./synthetic_marketplace
RUN pip install --no-deps . \
    && python3 -m gpu_jobs.train --help > /dev/null

# GPU jobs are started with their module and arguments by the runner (PipesK8sClient sets
# the command, which replaces this image's entrypoint: the runner starts it with NVIDIA's
# entrypoint, which turns on CUDA forward compatibility on older drivers); a bare `docker run`
# shows the training job's usage.
CMD ["python3", "-m", "gpu_jobs.train", "--help"]

# An image of this repository for the Prefect work pools on a cluster (docs/cluster.md): the checkout at
# /opt/tatar (TATAR_PROJECT_DIR, the deployments' working directory), installed the way `make install` does.
#   docker build -t tatar:$(git rev-parse --short HEAD) .
#   docker build --build-arg GPU_ENV=1 -t tatar-gpu:$(git rev-parse --short HEAD) .   # + .venv-gpu (make gpu-env)
FROM python:3.11-slim

ARG GPU_ENV=0
# DL3064: TOKENIZERS_PARALLELISM holds no secret (the rule matches "TOKEN" in the name).
# hadolint ignore=DL3064
ENV TATAR_PROJECT_DIR=/opt/tatar \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    PYTHONUNBUFFERED=1

WORKDIR /opt/tatar

# As `make install`: torch first, then the project with constraints.txt.
RUN pip install --no-cache-dir torch==2.13.0
COPY pyproject.toml constraints.txt README.md ./
COPY data_contracts/ data_contracts/
COPY tatar_core/ tatar_core/
COPY flows/ flows/
RUN pip install --no-cache-dir -c constraints.txt -e .

# The training environment for sft/grpo.launch.python (CUDA torch, DeepSpeed, vLLM; no Prefect), as `make gpu-env`.
COPY requirements-gpu.txt ./
RUN if [ "$GPU_ENV" = "1" ]; then \
      python -m venv .venv-gpu && .venv-gpu/bin/pip install --no-cache-dir -r requirements-gpu.txt; \
    fi

COPY . .

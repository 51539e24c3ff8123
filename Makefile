# tatar: two commands do everything on a fresh machine.
#   make demo   install, start Prefect (server, CPU and GPU work pools with a worker each), run `tatar/full` on
#               configs/demo.yaml (following its log lines: stage starts, progress, ends), print results
#   make test   install, check formatting and lint (ruff), run the test suite
# Also: make format (ruff format + fix), make up / make down (services), make install,
#       make plan CONFIG=configs/paper.yaml, make gpu-env (the training environment for launch.python, on a machine with CUDA)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.yaml
export PREFECT_HOME ?= $(CURDIR)/.prefect
export TATAR_PREFECT_PORT ?= 4200
export PREFECT_API_URL := http://127.0.0.1:$(TATAR_PREFECT_PORT)/api
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export TATAR_PROJECT_DIR := $(CURDIR)
export TATAR_CPU_POOL ?= tatar-cpu
export TATAR_GPU_POOL ?= tatar-gpu
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

GPU_VENV ?= .venv-gpu
PYTEST_WORKERS ?= 2   # test processes (pytest-xdist); each test file runs whole on one of them

.PHONY: demo test lint format install up down plan clean gpu-env

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	grep -q "^# tatar:" $(BIN)/activate || $(BIN)/python -m flows.services env >> $(BIN)/activate
	touch $@

install: $(VENV)/.installed

up: install
	$(BIN)/python -m flows.services up

down:
	@test -x $(BIN)/python && $(BIN)/python -m flows.services down || true

demo: up
	$(BIN)/tatar plan $(CONFIG)
	@start=$$(date +%s); \
	$(BIN)/python -m flows.follow tatar/full -p config=$(CONFIG); rc=$$?; \
	echo "Pipeline run took $$(( $$(date +%s) - start )) s"; \
	$(BIN)/tatar summary $(CONFIG) --ui http://127.0.0.1:$(TATAR_PREFECT_PORT); exit $$rc

plan: install
	$(BIN)/tatar plan $(CONFIG)

test: install lint
	$(BIN)/python -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# ruff: the formatter's check and the linter (pyproject.toml [tool.ruff]: line length 119); `make format` fixes both
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The training environment (requirements-gpu.txt: CUDA torch, DeepSpeed, vLLM, no Prefect) for sft/grpo.launch.python.
gpu-env:
	@nvidia-smi -L >/dev/null 2>&1 || { echo "make gpu-env: needs a machine with an NVIDIA GPU and its CUDA driver" \
	  "(nvidia-smi lists no GPU here). Run it on the GPU node; a CPU-only node needs no training environment." >&2; exit 1; }
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/pip install -q --upgrade pip
	$(GPU_VENV)/bin/pip install -q -r requirements-gpu.txt
	$(GPU_VENV)/bin/python -c "import torch, deepspeed, vllm, trl; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
	  print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.device_count(), 'GPU(s); deepspeed', \
	  deepspeed.__version__, '; vllm', vllm.__version__, '; trl', trl.__version__)"
	@echo "Training environment ready: set sft.launch.python and grpo.launch.python (with launch.mode: accelerate) to $(CURDIR)/$(GPU_VENV)/bin/python"

clean: down
	rm -rf runs .prefect

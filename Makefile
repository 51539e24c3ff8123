# tatar: two commands do everything on a fresh machine.
#   make demo   install, start Prefect (server + worker), run `tatar/full` on configs/demo.yaml (following its
#               log lines: stage starts, progress, ends), print results
#   make test   install and run the test suite
# Also: make up / make down (services), make install, make plan CONFIG=configs/paper.yaml

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
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install up down plan clean

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

test: install
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

clean: down
	rm -rf runs .prefect

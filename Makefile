# attnbench: the two commands of the README, each doing its own set-up from nothing.
#   make report   set up, run the default pipeline, open reports/index.html
#   make test     set up, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
SCALE ?=
SEEDS ?=
TASKS ?=
FINDINGS_TARGETS := $(if $(strip $(TASKS)),$(addprefix findings_,$(TASKS)),findings_all)
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
comma := ,
empty :=
space := $(empty) $(empty)
CONFIG_ARG := $(strip $(if $(SCALE),scale=$(SCALE),) $(if $(SEEDS),seeds=[$(subst $(space),$(comma),$(strip $(SEEDS)))],))
SCALE_ARG := $(if $(CONFIG_ARG),--config $(CONFIG_ARG),)

.PHONY: setup report findings smoke test browser slurm dvc-repro clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/attnbench: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools==84.2.1
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	@touch $@

setup: $(BIN)/attnbench  ## create .venv with the exact pins of requirements.txt

report: setup  ## run the pipeline (params.yaml; SCALE=smoke|default|full, SEEDS="0 1 2", CORES=N) -> reports/index.html
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1 $(SCALE_ARG)
	@echo "report: $(abspath reports/index.html)"

findings: setup  ## the committed findings: params.yaml's `findings` grid at 3 seeds -> results/findings/, README table (TASKS="intent load" for some tasks)
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1 --config grid=findings -- $(FINDINGS_TARGETS)
	$(BIN)/attnbench findings table --readme README.md --write

smoke: ## the whole grid at smoke scale (minutes)
	$(MAKE) report SCALE=smoke

dvc-repro: setup  ## the same DAG through DVC
	$(BIN)/dvc repro

browser:  ## Debian's chromium + chromedriver for the report's browser test (installed when root)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium/chromedriver missing and not root: the browser test will be skipped"; fi; \
	fi

slurm:  ## Debian's munge + SLURM for the single-node cluster of tests/test_slurm.py (installed when root)
	@if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
	    || ! command -v sbatch >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq munge slurmctld slurmd slurm-client >/dev/null; \
	  else echo "SLURM packages missing and not root: the SLURM test will be skipped"; fi; \
	fi

test: setup browser slurm  ## run the test suite
	$(BIN)/python -m pytest

clean:  ## remove pipeline outputs (keeps .venv)
	rm -rf data/prepared data/results data/summary data/state logs reports/index.html reports/notebooks .snakemake test-artifacts

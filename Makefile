# bnexp — `make help` lists the targets. Everything runs inside a virtual environment in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The torch/torchvision pair installed first; pip keeps it since pyproject pins loosely. If it is not
# available the install falls back to whatever pair pip resolves.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
SCALE  ?= quick

.DEFAULT_GOAL := help
.PHONY: help venv quick test lint bench bench-probe bench-train paper-fig3 report clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH) || echo "$(TORCH) unavailable; letting pip resolve torch"
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install bnexp with its dev tools

quick: venv ## reproduce every figure at quick scale (offline, CPU, minutes), then write outputs/report.html
	$(BIN)/bnexp reproduce all --scale $(SCALE); status=$$?; $(BIN)/bnexp report && exit $$status

test: venv ## run the test suite
	$(BIN)/pytest -q

lint: venv ## ruff
	$(BIN)/ruff check .

bench: venv ## chain engine vs a plain per-layer loop, per width (prints ratios)
	$(BIN)/python scripts/bench_chains.py

bench-probe: venv ## init-time probe: seeds batched (vmap) vs a plain loop over seeds (prints ratios)
	$(BIN)/python scripts/bench_probe.py

bench-train: venv ## trainer vs a plain DataLoader loop: images/s, ratio, logging overhead (CUDA part if present)
	$(BIN)/python scripts/bench_train.py

paper-fig3: venv ## rank/fig3 at the paper's scale (L = 10^6, d up to 256; see docs/performance.md)
	$(BIN)/bnexp reproduce fig3 --scale paper

report: venv ## one HTML page with every plotted figure and its claims
	$(BIN)/bnexp report

clean: ## remove generated outputs (keeps .venv)
	rm -rf outputs/runs outputs/figures outputs/hydra outputs/report.html

# bnexp — `make help` lists the targets. Everything runs inside a virtual environment in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The torch/torchvision pair installed first; pip keeps it since pyproject pins loosely. If it is not
# available the install falls back to whatever pair pip resolves.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
SCALE  ?= quick
# Extra arguments of every `bnexp reproduce` the targets run, e.g. a launcher for a cluster:
#   make paper REPRODUCE_ARGS="--launcher slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1"
REPRODUCE_ARGS ?=
BNEXP_REPRODUCE = $(BIN)/bnexp reproduce --scale $(SCALE)
# The papers (bnexp.figures.PAPERS): `make rank` reproduces every rank figure, `make rank-fig3` one of them.
PAPERS := rank markov ortho depth lowrank beyond

.DEFAULT_GOAL := help
.PHONY: help venv quick paper data test lint bench bench-probe bench-train bench-lowrank bench-deep bench-threads gpu-check cost-lowrank cost-paper report docs clean $(PAPERS)

help: ## list the targets, then every paper and figure target with its expected cost (from the figure registry)
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'
	@echo "make <paper> or <paper>-<fig> [SCALE=quick|paper] [REPRODUCE_ARGS=...]: every figure of a paper, or one:"
	@$(BIN)/bnexp figures --targets 2>/dev/null || echo "  (make venv first: the figure targets come from bnexp's registry)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH) || echo "$(TORCH) unavailable; letting pip resolve torch"
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install bnexp with its dev tools

quick: venv ## every figure at quick scale (CPU, ≈ 17–23 min on 2 cores): gets its data, prints a summary, writes the report
	-$(BIN)/bnexp data --scale $(SCALE)
	$(BNEXP_REPRODUCE) all $(REPRODUCE_ARGS); status=$$?; $(BIN)/bnexp report && exit $$status

paper: venv ## every figure at the paper's scale, resumable: init figures ≈ 1 h on 2 cores, training ≈ 25-50 GPU-h (docs/cluster.md)
	-$(BIN)/bnexp data --scale paper
	$(BIN)/bnexp reproduce all --scale paper $(REPRODUCE_ARGS); status=$$?; $(BIN)/bnexp report && exit $$status

data: venv ## get the real datasets the SCALE figures need (Debian's package as root/sudo, else torchvision's download)
	$(BIN)/bnexp data --scale $(SCALE)

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

bench-lowrank: venv ## replicate-stacked SGD vs a plain loop of modules (MLP-BN-5-64, 12 replicates): replicate-steps/s, ratio
	$(BIN)/python scripts/bench_lowrank.py

bench-deep: venv ## deep narrow MLP training (depth L = 100, 1000, d = 100): engine vs plain loop, compile, CUDA graphs, log-point share
	$(BIN)/python scripts/bench_deep.py

bench-threads: venv ## the chain engine's thread plans (auto, 1, 2) on a quiet machine and next to a busy core
	$(BIN)/python scripts/bench_threads.py

gpu-check: venv ## every CUDA check in one command (needs an NVIDIA card): bench-deep and bench-train on CUDA, tests on the card
	PYTHON=$(BIN)/python bash scripts/gpu_check.sh

cost-lowrank: venv ## paper-scale hours of each lowrank figure, one run at a time vs stacked groups, from short measured runs
	$(BIN)/python scripts/cost_lowrank.py

cost-paper: venv ## paper-scale hours of SGD steps of the ortho and depth training figures, from a few timed steps each
	$(BIN)/python scripts/cost_paper.py --threads 1

report: venv ## outputs/report/index.html: every plotted figure, the paper's caption, claims, commands, run metadata
	$(BIN)/bnexp report

docs: venv ## refresh what the figure registry generates: docs/cluster.md's cost table, the README's figure table
	$(BIN)/python scripts/figure_docs.py

clean: ## remove generated outputs (keeps .venv)
	rm -rf outputs/runs outputs/figures outputs/hydra outputs/report

# A paper, or one of its figures by id: make ortho, make ortho-fig2 SCALE=paper. A wrong id stops with bnexp's
# error naming the valid figures; `make help` lists them all with their costs.
$(PAPERS): venv
	$(BNEXP_REPRODUCE) $@ $(REPRODUCE_ARGS)
rank-%: venv ; $(BNEXP_REPRODUCE) rank/$* $(REPRODUCE_ARGS)
markov-%: venv ; $(BNEXP_REPRODUCE) markov/$* $(REPRODUCE_ARGS)
ortho-%: venv ; $(BNEXP_REPRODUCE) ortho/$* $(REPRODUCE_ARGS)
depth-%: venv ; $(BNEXP_REPRODUCE) depth/$* $(REPRODUCE_ARGS)
lowrank-%: venv ; $(BNEXP_REPRODUCE) lowrank/$* $(REPRODUCE_ARGS)
beyond-%: venv ; $(BNEXP_REPRODUCE) beyond/$* $(REPRODUCE_ARGS)

"""The make targets come from the figure registry without a generated file: pattern rules reproduce any figure by
id (a wrong id stops with bnexp's error naming the valid figures), `make help` lists every paper and figure
target with its expected cost, and `scripts/figure_docs.py` keeps the cost table of docs/cluster.md and the
README's figure table in step with the registry; every figure declares the paper's caption and its costs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp import figures

ROOT = Path(__file__).resolve().parents[1]
FIGS = figures.all_figures()
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
# this interpreter's bnexp, and its stamp taken as up to date: no target may (re)install the environment here
MAKE = ["make", f"BIN={Path(sys.executable).parent}", "-o", ".venv/.installed"]


def test_generated_docs_match_the_registry():
    done = subprocess.run([sys.executable, "scripts/figure_docs.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fig", FIGS, ids=lambda f: f.id)
def test_every_figure_declares_its_paper_caption_and_costs(fig):
    assert fig.paper_caption, f"{fig.id}: give Figure(..., paper_caption=PaperCaption(label, text))"
    label, caption = fig.paper_caption
    assert label.split()[0] in ("Figure", "Table") and len(caption) > 20
    assert fig.costs, f"{fig.id}: give Figure(..., costs=Costs(quick=..., paper=..., data=..., basis=...))"
    for scale in ("quick", "paper"):
        assert fig.cost(scale) != "not estimated", (fig.id, scale)
    assert fig.costs.data and fig.costs.basis and fig.run_count("paper") > 0


def test_the_makefile_has_a_pattern_rule_for_every_paper():
    makefile = (ROOT / "Makefile").read_text()
    papers = re.search(r"^PAPERS := (.*)$", makefile, re.M)[1].split()
    assert papers == list(figures.PAPERS)
    for paper in papers:
        assert f"\n{paper}-%: venv ; $(BNEXP_REPRODUCE) {paper}/$* $(REPRODUCE_ARGS)\n" in makefile
    assert not (ROOT / "make").exists() and "include" not in makefile  # nothing generated to keep in step


@needs_make
def test_make_help_lists_every_figure_target_with_its_cost_and_a_target_runs_its_figure():
    text = subprocess.run([*MAKE, "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("quick", "test", "paper", "data", "report", "docs"):
        assert f"  {target} " in text
    for fig in FIGS:
        line = next(line for line in text.splitlines() if line.strip().startswith(fig.id.replace("/", "-") + " "))
        assert fig.cost("quick") in line and fig.cost("paper") in line
    for paper in {f.paper for f in FIGS}:
        assert f"  {paper} " in text
    dry = subprocess.run([*MAKE, "-n", "ortho-fig2", "SCALE=paper", "REPRODUCE_ARGS=--launcher joblib"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "bnexp reproduce --scale paper ortho/fig2 --launcher joblib" in dry
    dry = subprocess.run([*MAKE, "-n", "depth"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "bnexp reproduce --scale quick depth" in dry


@needs_make
def test_a_wrong_figure_target_names_the_valid_figures():
    done = subprocess.run([*MAKE, "-s", "rank-fig99"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "figure='rank/fig99' is not valid" in done.stderr and "rank/fig3" in done.stderr

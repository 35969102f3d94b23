"""The make targets come from the figure registry: one per figure and per paper, each with its expected cost in
`make help`, and the cost table of docs/cluster.md; every figure has the paper's caption (for the report)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp import figures

ROOT = Path(__file__).resolve().parents[1]
FIGS = figures.all_figures()


def test_generated_targets_and_cost_table_match_the_registry():
    done = subprocess.run([sys.executable, "scripts/make_targets.py", "--check"], cwd=ROOT, capture_output=True,
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


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_figure_target_with_its_cost_and_a_target_runs_its_figure():
    text = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("quick", "test", "paper", "data", "report"):
        assert f"  {target} " in text
    for fig in FIGS:
        line = next(line for line in text.splitlines() if line.strip().startswith(fig.id.replace("/", "-") + " "))
        assert fig.cost("quick") in line and fig.cost("paper") in line
    for paper in {f.paper for f in FIGS}:
        assert f"  {paper} " in text
    dry = subprocess.run(["make", "-n", "ortho-fig2", "SCALE=paper", "REPRODUCE_ARGS=--launcher joblib"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "bnexp reproduce --scale paper ortho/fig2 --launcher joblib" in dry

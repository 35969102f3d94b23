"""``make cost-paper`` (scripts/cost_paper.py): the paper-scale step counts of a figure's runs come from its own
configs, and a step of the engine's own Trainer on a paper-scale network is timed (a positive, finite number;
timings are never asserted)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from bnexp import figures
from bnexp.results import run_dir


def _script():
    spec = importlib.util.spec_from_file_location("cost_paper", Path(__file__).parents[1] / "scripts/cost_paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_runs_and_their_steps_come_from_the_figures_configs():
    cost = _script()
    fig = figures.get("depth/fig4")
    runs = {str(run_dir(c)): c for grid in fig.grids("paper").values() for c in grid.configs()}
    assert len(runs) == 9  # sin/tanh/identity × depth 100/500/1000, one seed each
    cfg = next(iter(runs.values()))
    assert cost.run_steps(cfg) == 1000 * 500  # 1000 epochs of 50 000 / 100 steps
    ortho = next(c for grid in figures.get("ortho/fig3").grids("paper").values() for c in grid.configs())
    assert cost.run_steps(ortho) == 4 * 30 * 100  # 4 seeds × 30 epochs × 50 000 / 500


def test_a_paper_scale_step_is_timed_on_the_engines_trainer():
    cost = _script()
    cfg = next(c for grid in figures.get("depth/fig4").grids("paper").values() for c in grid.configs()
               if int(c.model.depth) == 100)
    seconds = cost.step_seconds(cfg, 1, torch.device("cpu"))
    assert math.isfinite(seconds) and seconds > 0

"""A training run's step unit reaches its figures: runs that log every k optimiser steps (``optim.log_every``)
note ``step_unit: iteration`` in run.json, ``results.load_runs`` joins it as ``run.step_unit``, and the
training figures label their x axis by it (paper-scale rank/fig5, fig7 and fig13 log per iteration)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bnexp import cli, figures, results
from bnexp.figures import stats


@pytest.mark.parametrize(("extra", "unit"), [(["optim.log_every=3"], "iteration"), ([], "epoch")])
def test_load_runs_joins_the_step_unit_of_run_json(outputs, extra, unit):
    args = ["train", "exp_name=unit", "optim.epochs=1", "optim.lr=0.1", "data.n_train=64", "data.n_test=32",
            "data.batch_size=16", "model.depth=2", "model.width=8", "dtype=float32", "runtime.progress=false",
            "probe.metrics=[rank_torch]", *extra]
    assert cli.main(args) == 0
    df = results.load_runs(sorted((outputs / "runs" / "unit").glob("*/")))
    assert set(df["run.step_unit"]) == {unit} and set(df["run.status"]) == {"done"}
    assert stats.step_label(df) == unit


def _runs_like(unit: str, norms: list[str]) -> pd.DataFrame:
    """Long rows as load_runs gives them: train_acc and the last layer's rank bound per norm, two seeds."""
    rows = []
    for r, norm in enumerate(norms):
        for seed in (0, 1):
            for step in (0, 390, 780):
                rows.append((seed, step, np.nan, "train_acc", 0.5 + step / 2000, norm, f"r{r}", unit))
                rows.append((seed, step, 3, "rank_lower_bound", 4.0 - step / 1000, norm, f"r{r}", unit))
    return pd.DataFrame(rows, columns=["seed", "step", "layer", "metric", "value", "norm.name", "run",
                                       "run.step_unit"])


@pytest.mark.parametrize("unit", ["iteration", "epoch"])
def test_rank_fig7_labels_its_x_axis_by_the_runs_step_unit(unit):
    fig = figures.get("rank/fig7").plot({"runs": _runs_like(unit, ["bn_torch", "bn_nocenter"])}, "paper")
    assert [ax.get_xlabel() for ax in fig.axes] == [unit, unit]
    plt.close(fig)


def test_mixed_step_units_are_an_error():
    df = pd.concat([_runs_like("iteration", ["bn_torch"]), _runs_like("epoch", ["bn_nocenter"])])
    with pytest.raises(ValueError, match="mix step units"):
        stats.step_label(df)

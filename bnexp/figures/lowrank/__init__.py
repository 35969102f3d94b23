"""Figures of "SGD Noise and Implicit Low-Rank Bias in Deep Neural Networks" (Galanti & Poggio, 2022), one module
per family:

* :mod:`.convergence` — fig1: with weight decay SGD does not converge (the weights keep moving or collapse to 0).
* :mod:`.batch` — fig2, fig4, fig5: the average rank falls with the batch size (MLP-BN, RES-BN, MLP without BN).
* :mod:`.decay` — fig3: the average rank falls with the weight decay; none without it.
* :mod:`.layers` — fig6, fig7: ranks across layers (MLP-BN bottleneck, balanced residual blocks).

Paper scale is the experiment files ``configs/exp/lowrank_*.yaml`` (CIFAR-10 or MNIST under ``data.root``, 500 or
2000 epochs: GPU-hours). Quick scale is the spec's calibrated CPU variants: 2 000 real Fashion-MNIST training
images (Debian's ``dataset-fashion-mnist``, offline), width 64, 30 epochs and larger weight decays (the paper's
λ = 5e-4 lowers no rank within a quick budget: rank falls with steps × η·λ/(1 − μ)). Smoke scale runs on synthetic
class prototypes in seconds. Here: those data deltas and the readings every family shares.
"""

from __future__ import annotations

import math

import pandas as pd

from bnexp.figures import stats, style
from bnexp.figures.stats import at_step, pick

# Quick: a fixed random subset of 2 000 Fashion-MNIST training images (the same for every run of a figure).
FMNIST_2000 = {"data": "fashion_mnist", "data.normalize": "dataset", "data.n_train": 2000, "data.n_test": 1000,
               "data.seed": 0}
# Smoke: synthetic noisy class prototypes, 14×14 grey.
PROTO = {"data": "prototypes", "data.shape": [1, 14, 14], "data.normalize": "none", "data.n_train": 512,
         "data.n_test": 256, "data.seed": 0}
# The spec's quick networks: width 64, depth 5, no spectra files (the ranks are logged; spectra cost disk only).
QUICK_NET = {"model.width": 64, "model.depth": 5, "probe.spectra": False}


def final(df: pd.DataFrame, metric: str, **eq) -> pd.Series:
    """The value of a whole-network ``metric`` (layer empty) at each run's last log point, indexed by run."""
    sub = at_step(pick(df, metric, **eq), "last")
    return sub.groupby("run")["value"].mean()


def final_by(df: pd.DataFrame, metric: str, key: str, **eq) -> pd.Series:
    """The final ``metric`` per value of config column ``key`` (one run each; the mean if there are several)."""
    sub = at_step(pick(df, metric, **eq), "last")
    return sub.groupby(key)["value"].mean().sort_index()


def value_at(df: pd.DataFrame, metric: str, step: int, **eq) -> float:
    """``metric`` at log point ``step`` (mean over the selected runs), nan if absent."""
    sub = pick(df, metric, **eq)
    sub = sub[sub["step"] == step]
    return float(sub["value"].mean()) if len(sub) else math.nan


def rank_and_accuracy(top, bottom, df: pd.DataFrame, key: str, label, title: str) -> None:
    """One column of the paper's Figs 2–5 layout: the average rank against epoch (``top``) and the train (solid,
    full split in eval mode) and test (dashed) accuracy (``bottom``), one line per value of config column ``key``."""
    style.bands(top, pick(df, "avg_rank"), "step", key, label=label, marker="")
    style.bands(bottom, pick(df, "train_full_acc"), "step", key, label=label, marker="")
    style.bands(bottom, pick(df, "test_acc"), "step", key, label=lambda v: "", marker="", linestyle="--")
    top.set_title(title)
    top.set_ylabel("average rank")
    bottom.set_ylabel("accuracy (train —, test --)")
    style.legend(top)
    for ax in (top, bottom):
        ax.set_xlabel(stats.step_label(df))

"""Training figures of the rank-collapse papers (Daneshmand et al., NeurIPS 2020 and its long version):
rank/fig1, fig4, fig5, fig6, fig7, fig10, fig11, fig12, fig13, and their markov aliases (fig5–fig8, fig11).

Every figure trains networks with ``bnexp train`` (``optim.epochs > 0``) and reads the per-log-point rows of
``metrics.csv``: ``train_loss``/``train_acc`` (running means since the previous log point), ``test_loss``/``test_acc``
(eval mode), and the probe metrics of a fixed probe batch (rank of the last hidden layer, r(H) of chosen layers,
the gradient alignment). Scales:

* ``paper``: the paper's setup as far as it is stated, the rank_markov spec's decision where it is not (each
  caption lists them). Needs the real datasets (Fashion-MNIST, CIFAR-10) and, for VGG19/ResNet-50, a GPU.
* ``quick``: a CPU in minutes. The Fashion-MNIST figures (fig1, fig6, fig12) train on a subsample of the real
  Fashion-MNIST (offline from Debian's dataset-fashion-mnist); the CIFAR figures on synthetic class-prototype
  images (``data=prototypes``), with the mini VGG/ResNet of the spec's quick setups. Captions say so.
* ``smoke``: seconds, synthetic data only, for the tests; the claims are the quick ones.

Claims compare numbers from our runs with the papers' qualitative statements under explicit thresholds (the
spec's quick-scale assertions).
"""

from __future__ import annotations

import math

import pandas as pd

from bnexp.figures import Claim, Figure, RunGrid, register, stats, style
from bnexp.figures.stats import at_step, last_layer, pick

BLUE, ORANGE, GREEN, RED, PURPLE = "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"

# Synthetic stand-ins (quick/smoke of the CIFAR figures, smoke of the Fashion-MNIST ones).
GREY_PROTO = {"data": "prototypes", "data.shape": [1, 14, 14]}
COLOUR_PROTO = {"data": "prototypes", "data.shape": [3, 16, 16]}
# Real Fashion-MNIST, subsampled (quick of fig1, fig6, fig12).
FMNIST_SUB = {"data": "fashion_mnist", "data.normalize": "none"}


# ------------------------------------------------------------------------------------------------ helpers


def mean_of(df: pd.DataFrame) -> float:
    """Mean over seeds of per-seed values (``nan`` when empty)."""
    if df.empty:
        return math.nan
    return float(df.groupby("seed")["value"].mean().mean())


def curve(ax, df: pd.DataFrame, label: str, color: str, *, linestyle: str = "-", marker: str = "o") -> None:
    """Mean and 95% bootstrap CI over seeds of ``value`` against ``step``."""
    if df.empty:
        return
    style.band(ax, stats.summarize(df, "step"), "step", label=label, color=color, linestyle=linestyle,
                  marker=marker)


# ------------------------------------------------------------------------------------------------ rank/fig4, 11, 12

PRE_DEPTHS = {"paper": [10, 20, 30, 40], "quick": [10, 20], "smoke": [20]}
PRE_QUICK = {"model.width": 64, "data.batch_size": 64, "data.n_train": 1920, "data.n_test": 500,
             "optim.epochs": 5, "optim.lr_grid": None, "optim.lr": 0.01, "n_seeds": 3,
             "pretrain.minibatches": 50, "pretrain.steps": 10, "pretrain.lr": 0.001}


def _pretrain_runs(exp: str, overrides: dict, depths: list[int]) -> dict:
    grid = {"model.depth": depths}
    vanilla = {**overrides, "norm": "none"}
    if overrides.get("optim.lr_grid", "paper") == "paper":  # paper: the pre-trained/vanilla grid is {1e-2, 1e-3}
        vanilla["optim.lr_grid"] = [0.01, 0.001]
    pre_keys = {k: v for k, v in vanilla.items() if not k.startswith("pretrain.")}
    return {
        "bn": RunGrid(exp, {k: v for k, v in overrides.items() if not k.startswith("pretrain.")}, grid),
        "pretrained": RunGrid(exp, {**vanilla, "pretrain": "end_to_end"}, grid),
        "vanilla": RunGrid(exp, pre_keys, grid),
    }


def _pre_scales(exp: str, quick_data: dict, smoke_data: dict) -> dict:
    return {"paper": _pretrain_runs(exp, {}, PRE_DEPTHS["paper"]),
            "quick": _pretrain_runs(exp, {**PRE_QUICK, **quick_data}, PRE_DEPTHS["quick"]),
            "smoke": _pretrain_runs(exp, {**PRE_QUICK, **smoke_data, "data.n_train": 960, "optim.epochs": 3,
                                          "n_seeds": 2, "pretrain.minibatches": 15}, PRE_DEPTHS["smoke"])}


FIG4_RUNS = _pre_scales("pretrain_vs_bn", COLOUR_PROTO, COLOUR_PROTO)
FIG12_RUNS = _pre_scales("pretrain_vs_bn_fmnist", {"data": "fashion_mnist"}, GREY_PROTO)
PRE_VARIANTS = (("bn", "BN-MLP (SGD)", BLUE), ("pretrained", "pre-trained vanilla (SGD)", ORANGE),
                ("vanilla", "vanilla (SGD)", "tab:grey"))


def plot_pretrain(metrics: tuple[tuple[str, str], ...]):
    def plot(frames, scale):
        depths = sorted(frames["bn"]["model.depth"].unique())
        fig, axes = style.new_figure(ncols=len(depths), nrows=len(metrics))
        for row, (metric, ylabel) in enumerate(metrics):
            for col, depth in enumerate(depths):
                ax = axes[row * len(depths) + col]
                for key, label, color in PRE_VARIANTS:
                    curve(ax, pick(frames[key], metric, model__depth=depth), label, color)
                ax.set_xlabel("epoch")
                ax.set_ylabel(ylabel)
                ax.set_title(f"{int(depth)} hidden layers ({scale})")
        axes[0].legend()
        return fig

    return plot


def _final(frames, key, metric, depth, which="last"):
    return mean_of(at_step(pick(frames[key], metric, model__depth=depth), which))


def _epoch_one(frames, key, metric, depth):
    sub = pick(frames[key], metric, model__depth=depth)
    return mean_of(sub[sub["step"] == 1])


def claims_fig4(frames, scale):
    """Per depth: pre-training raises r(H_L) and BN trains; at the deepest net (where depth slows the vanilla
    net: the paper's point) the pre-trained net ends with the lower training loss."""
    depths = sorted(frames["bn"]["model.depth"].unique())
    claims = []
    for depth in depths:
        r_pre, r_van = (mean_of(at_step(last_layer(pick(frames[key], "rank_lower_bound", model__depth=depth)), "first"))
                        for key in ("pretrained", "vanilla"))
        claims += [
            Claim.at_least(f"depth {depth}: r(H_L) at epoch 0, pre-trained / same init not pre-trained", r_pre / r_van,
                           1.25 if scale == "smoke" else 1.5, "pre-training maximises the rank"),
            # epoch 1 (a running mean in train mode), not step 0: at step 0 the losses are eval-mode passes, where
            # torch BN still has its initial running statistics (mean 0, variance 1) and acts as the identity
            Claim.above(f"depth {depth}: BN training loss, epoch 1 − last epoch",
                        _epoch_one(frames, "bn", "train_loss", depth)
                        - _final(frames, "bn", "train_loss", depth), 0.0, "BN trains"),
        ]
    deep = depths[-1]
    claims.append(Claim.above(f"depth {deep} (deepest): final training loss, vanilla − pre-trained",
                              _final(frames, "vanilla", "train_loss", deep)
                              - _final(frames, "pretrained", "train_loss", deep), 0.0,
                              "pre-training speeds up training of deep nets"))
    return claims


def claims_fig11(frames, scale):
    deep = sorted(frames["bn"]["model.depth"].unique())[-1]
    return [Claim.above(f"depth {deep} (deepest): final test loss, vanilla − pre-trained",
                        _final(frames, "vanilla", "test_loss", deep) - _final(frames, "pretrained", "test_loss", deep),
                        0.0, "the improvement shows in the test loss too")]


PRE_RECIPE = (
    "ReLU MLP of width 128, glorot normal init; BN = torch BatchNorm1d (Linear → BN → ReLU); pre-training = "
    "Algorithm 1 end to end as in the code (1000 minibatches of 64 from one permutation, 40 SGD steps each, "
    "lr 1e-3, on r^(-1/2) of the last hidden layer's Gram matrix). SGD batch 64, no momentum, 100 epochs; learning "
    "rate grid-searched per run by the lowest final training loss (BN {1e-2, 1e-3, 1e-4}; vanilla and pre-trained "
    "{1e-2, 1e-3}). Depths {10, 20, 30, 40} (the text does not list them). 5 independent initialisations (the code "
    "trained its runs from one shared initial state). The vanilla net without pre-training is our addition: the "
    "reference for the claim. Quick: width 64, depths {10, 20}, pre-training 50 minibatches × 10 steps, 5 epochs "
    "at lr 0.01 (no grid), 3 seeds, on {data}; smoke: depth 20, 3 epochs, on synthetic prototype images.")
FIG4_CAPTION = ("Training loss per epoch of CIFAR-10 MLPs of increasing depth: BN vs rank-pre-trained vanilla nets; "
                "mean and 95% CI over seeds. Inputs are the raw 0–255 pixels (the code's). "
                + PRE_RECIPE.replace("{data}", "synthetic 3×16×16 class-prototype images (no CIFAR-10 offline)"))
FIG11_CAPTION = ("rank/fig4's runs: training accuracy and test loss (eval mode; the code evaluated BN nets in train "
                 "mode) per epoch. " + PRE_RECIPE.replace("{data}", "synthetic 3×16×16 class-prototype images"))
FIG12_CAPTION = ("rank/fig4 and fig11 on Fashion-MNIST: training loss, accuracy and test loss per epoch. Inputs are "
                 "the raw 0–255 pixels as for CIFAR-10 (the paper does not say; with [0, 1] inputs end-to-end "
                 "pre-training has no gradient: r(H_L) stays 1.000, measured). "
                 + PRE_RECIPE.replace("{data}", "a subsample of the real Fashion-MNIST"))

# ------------------------------------------------------------------------------------------------ register

ACC_LOSS = (("train_loss", "training loss"),)
ACC_TEST = (("train_acc", "training accuracy"), ("test_loss", "test loss"))
ALL_CURVES = (("train_loss", "training loss"), ("train_acc", "training accuracy"), ("test_loss", "test loss"))

register(
    Figure("rank/fig4", "Rank pre-training vs BN: training loss, CIFAR-10 MLPs", FIG4_CAPTION, FIG4_RUNS,
           plot_pretrain(ACC_LOSS), claims_fig4, kind="train"),
    Figure("rank/fig11", "Pre-training vs BN: training accuracy and test loss", FIG11_CAPTION, FIG4_RUNS,
           plot_pretrain(ACC_TEST), claims_fig11, kind="train"),
    Figure("rank/fig12", "Pre-training vs BN on Fashion-MNIST", FIG12_CAPTION, FIG12_RUNS, plot_pretrain(ALL_CURVES),
           lambda frames, scale: claims_fig4(frames, scale) + claims_fig11(frames, scale), kind="train"),
)


register(
)

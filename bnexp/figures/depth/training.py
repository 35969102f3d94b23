"""depth/fig4 and figH1–H4: shaped BN MLPs train at an almost depth-independent rate, and far better than the
identity (so not in a linear regime); figH1–H3 repeat fig4 on MNIST, Fashion-MNIST and CIFAR-100 with the test
accuracy (eval mode, BN running statistics), figH4 is fig4's test accuracy.

Setup (``configs/exp/depth_train.yaml``, the paper's run.py): width 100, depths 100/500/1000, shaped sin, tanh and
identity (α_ℓ = (ℓ+1)^(−0.4)), orthogonal weights, torch BN, biases, SGD lr 0.001, batches of 100, 1000 epochs,
one run each; ``train_acc`` is the epoch's running accuracy in train mode, ``test_acc`` an eval-mode pass. Quick
scale (the spec's): a synthetic 10-class task (``data=teacher``: a random tanh teacher's argmax on 64-dim
Gaussian inputs, 2 000 training and 500 test samples), width = batch = 32, depths 10 and 50, lr 0.05, 15 epochs;
figH2 on 2 000 real Fashion-MNIST images instead. MNIST and CIFAR-100 are not on this machine, so figH1's and
figH3's quick scale read the synthetic runs of fig4 (their captions say so).
"""

from __future__ import annotations

import math

import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, style
from bnexp.figures.stats import pick

EXP = "depth_train"
ACTS = ("sin", "tanh", "linear")
TEACHER = {"data": "teacher", "data.shape": [64], "data.n_train": 2000, "data.n_test": 500, "data.seed": 0,
           "data.normalize": "none"}
FMNIST = {"data": "fashion_mnist", "data.n_train": 2000, "data.n_test": 1000, "data.seed": 0,
          "data.normalize": "dataset"}
SMALL = {"model.width": 32, "data.batch_size": 32, "optim.lr": 0.05, "probe.every": 1, "optim.epochs": 15}
TINY = {**SMALL, "optim.epochs": 6, "model.width": 16, "data.batch_size": 16}
QUICK_TRAIN, SMOKE_TRAIN = {**TEACHER, **SMALL}, {**TEACHER, **TINY}
QUICK_DEPTHS, SMOKE_DEPTHS = [10, 50], [4, 12]


def runs(data: str | None, quick_real: bool = False) -> dict:
    """Per scale: the experiment on dataset ``data`` (None: its own CIFAR-10); quick and smoke on the synthetic
    task, or on 2 000 Fashion-MNIST images with ``quick_real``."""
    paper = {"data": data} if data else {}
    quick = {**FMNIST, **SMALL} if quick_real else QUICK_TRAIN
    smoke = {**FMNIST, **TINY, "data.n_train": 512} if quick_real else SMOKE_TRAIN
    return {"paper": {"runs": RunGrid(EXP, paper)},
            "quick": {"runs": RunGrid(EXP, quick, {"act": list(ACTS), "model.depth": QUICK_DEPTHS})},
            "smoke": {"runs": RunGrid(EXP, smoke, {"act": list(ACTS), "model.depth": SMOKE_DEPTHS})}}


def accuracy(df: pd.DataFrame, metric: str, act: str) -> pd.DataFrame:
    sub = pick(df, metric, act__name=act)
    return sub[sub["step"] > 0]


def panels(axes, df: pd.DataFrame, metric: str, ylabel: str, scale: str, legend: bool = True) -> None:
    """One panel per activation: ``metric`` against the epoch (log axis), one line per depth (the legend in the
    first panel, when ``legend``)."""
    for ax, act in zip(axes, ACTS):
        style.bands(ax, accuracy(df, metric, act), "step", "model.depth", label="depth {:g}".format, marker="")
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{'identity' if act == 'linear' else act} ({scale})")
    if legend:
        style.legend(axes[0])


def final(df: pd.DataFrame, metric: str, act: str, depth: int) -> float:
    sub = accuracy(df, metric, act)
    sub = sub[sub["model.depth"] == depth]
    return float(sub[sub["step"] == sub["step"].max()]["value"].mean())


def first(df: pd.DataFrame, metric: str, act: str, depth: int) -> float:
    sub = accuracy(df, metric, act)
    return float(sub[(sub["model.depth"] == depth) & (sub["step"] == 1)]["value"].mean())


def train_claims(df: pd.DataFrame) -> list[Claim]:
    """The spec's quick checks of fig4 (and of figH1–H3's train row)."""
    depths = sorted(int(d) for d in df["model.depth"].unique())
    shallow, deep = depths[0], depths[-1]
    finite = pick(df, "train_loss")["value"].map(math.isfinite).all()
    out = [Claim.at_least("every run's training loss stays finite", float(finite), 1.0, "no divergence")]
    for act in ACTS:
        worst = min(final(df, "train_acc", act, d) for d in depths)
        gain = min(final(df, "train_acc", act, d) - first(df, "train_acc", act, d) for d in depths)
        out += [
            Claim.at_least(f"{act}: final train accuracy, lowest over depths", worst, 0.4, "trains at every depth"),
            Claim.at_least(f"{act}: final train accuracy, depth {deep} − depth {shallow}",
                           final(df, "train_acc", act, deep) - final(df, "train_acc", act, shallow), -0.15,
                           "nearly depth-independent"),
            Claim.at_least(f"{act}: train accuracy gained from epoch 1 to the last, smallest over depths", gain, 0.2,
                           "SGD converges"),
        ]
    return out


def test_claims(df: pd.DataFrame) -> list[Claim]:
    depths = sorted(int(d) for d in df["model.depth"].unique())
    return [Claim.at_least(f"{act}: final test accuracy (eval mode), lowest over depths",
                           min(final(df, "test_acc", act, d) for d in depths), 0.3, "generalises")
            for act in ("sin", "tanh")]


def plot_fig4(frames, scale):
    fig, axes = style.new_figure(ncols=3, width=3.0)
    panels(axes, frames["runs"], "train_acc", "train accuracy", scale)
    return fig


def plot_both(frames, scale):
    fig, axes = style.new_figure(ncols=3, nrows=2, width=3.0)
    panels(axes[:3], frames["runs"], "train_acc", "train accuracy", scale)
    panels(axes[3:], frames["runs"], "test_acc", "test accuracy", scale, legend=False)
    return fig


def plot_test(frames, scale):
    fig, axes = style.new_figure(ncols=3, width=3.0)
    panels(axes, frames["runs"], "test_acc", "test accuracy", scale)
    return fig


SCALED = ("Paper scale: width 100, depths 100/500/1000, lr 0.001, 1000 epochs (not run here: ≈ 65 GPU-h a dataset). "
          "Quick: the spec's stand-in, width = batch = 32, depths 10 and 50, lr 0.05 (raised so that 15 epochs "
          "learn), 15 epochs; smoke: width 16, depths 4 and 12, 6 epochs. Train accuracy: the epoch's running "
          "accuracy in train mode; test accuracy: eval mode with BN's running statistics; identity = act linear, "
          "with the same gain (it only rescales the logits). Not checked at quick scale: the paper's 'identity trains "
          "much worse' (the spec measures a margin of only 0.05–0.09 there).")
SYNTHETIC = " Quick data: the synthetic teacher task (10 classes of a random tanh teacher on 64-dim Gaussian inputs)."
CAPTION_FIG4 = ("Train accuracy per epoch of shaped BN MLPs (α_ℓ = (ℓ+1)^(−0.4)) with orthogonal weights on CIFAR-10, "
                "one line per depth. " + SCALED + SYNTHETIC)
PAPER_FIG4 = PaperCaption("Figure 4", (
    "Train accuracy on CIFAR10 of MLPs with batch normalization and shaped sin (a), tanh (b) and identity (c) "
    "activations, orthogonal weights, for depths 100, 500 and 1000: the convergence rate barely depends on depth."))
COSTS = Costs(quick="≈ 1 min, 2-core CPU", paper="≈ 65 GPU-h a dataset (spec estimate)",
              data="CIFAR-10 (quick: synthetic)",
              basis="Spec depth Fig 4 / H1–H4: 9 runs a dataset of ≤ 1000 epochs, launch-bound at ≈ 12·L kernels a "
                    "step (≈ 14 GPU-h for L = 1000); make bench-deep times a step here; not run here.")

register(Figure("depth/fig4", "Train accuracy of shaped BN MLPs of depth 100–1000 (CIFAR-10)", CAPTION_FIG4,
                runs(None), plot_fig4, lambda f, s: train_claims(f["runs"]), kind="train", paper_caption=PAPER_FIG4,
                costs=COSTS))
for fig_id, data, name, quick_real, paper_fig in (
        ("depth/figH1", "mnist", "MNIST", False, "Figure H1"),
        ("depth/figH2", "fashion_mnist", "Fashion-MNIST", True, "Figure H2"),
        ("depth/figH3", "cifar100", "CIFAR-100", False, "Figure H3")):
    quick_data = (" Quick data: 2 000 Fashion-MNIST training and 1 000 test images." if quick_real else
                  f" Quick data: {name} is not on this machine; the quick and smoke scales read fig4's synthetic runs"
                  " (the teacher task).")
    register(Figure(
        fig_id, f"Train and test accuracy of shaped BN MLPs on {name}",
        f"Train (top) and test (bottom) accuracy per epoch on {name}, as fig4. " + SCALED + quick_data,
        runs(data, quick_real), plot_both, lambda f, s: train_claims(f["runs"]) + test_claims(f["runs"]),
        kind="train", costs=Costs(quick=COSTS.quick, paper=COSTS.paper, basis=COSTS.basis, data=f"{name} (quick: "
                                  f"{'Fashion-MNIST, 2 000 images' if quick_real else 'synthetic'})"),
        paper_caption=PaperCaption(paper_fig, f"Train and test accuracy on {name} of MLPs with batch normalization "
                                   "and shaped sin, tanh and identity activations, for depths 100, 500 and 1000.")))
register(Figure("depth/figH4", "Test accuracy of shaped BN MLPs on CIFAR-10 (fig4's runs)",
                "Test accuracy per epoch of fig4's runs. " + SCALED + SYNTHETIC, runs(None), plot_test,
                lambda f, s: test_claims(f["runs"]), kind="train", costs=COSTS,
                paper_caption=PaperCaption("Figure H4", "Test accuracy on CIFAR10 of the networks of Figure 4.")))

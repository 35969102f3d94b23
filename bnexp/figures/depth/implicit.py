"""depth/fig6, figG1, figG2: the implicit orthogonality bias of SGD — in a deep BN MLP trained by SGD the middle
layers' weights stay close to orthogonal (φ(W_ℓ) small, the deeper the smaller) although their gradients do not
vanish.

Setup (``configs/exp/depth_train.yaml``, the paper's run.py): CIFAR-10, shaped sin / tanh (and identity) MLPs of
depth 100, 500, 1000, width 100, orthogonal init, torch BN, lr 0.001; every 10th epoch, on a fixed batch of 100
training images in train mode, φ(W_ℓ) (``weight_isometry_gap``) and ‖∇_{W_ℓ} L‖_F (``grad_norm``) of every weight
matrix ℓ = 0 … L. The figures read epochs 50, 100, 200, 300 (fig6: tanh, L = 1000). Quick scale: the spec's
synthetic stand-in (:data:`bnexp.figures.depth.training.TEACHER`: a random tanh teacher's 10 classes on 64-dim
Gaussian inputs), width 32, depths 20 and 100, lr 0.05, 15 epochs, measured every epoch; the figures read epochs
1, 8 and 15 (the spec's).
"""

from __future__ import annotations

import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, style
from bnexp.figures.depth.training import EXP, QUICK_TRAIN, SMOKE_TRAIN
from bnexp.figures.stats import pick

RUNS = {
    "paper": {"runs": RunGrid(EXP)},
    "quick": {"runs": RunGrid(EXP, QUICK_TRAIN, {"act": ["sin", "tanh"], "model.depth": [20, 100]})},
    "smoke": {"runs": RunGrid(EXP, SMOKE_TRAIN, {"act": ["sin", "tanh"], "model.depth": [8, 24]})},
}
EPOCHS = {"paper": [50, 100, 200, 300], "quick": [1, 8, 15], "smoke": [1, 3, 6]}
METRICS = (("weight_isometry_gap", r"isometry gap $\phi(W_\ell)$"),
           ("grad_norm", r"gradient norm $\|\nabla_{W_\ell} L\|_F$"))


def per_layer(df: pd.DataFrame, metric: str, act: str, depth: int) -> pd.DataFrame:
    """``metric`` of every weight matrix ℓ = 0 … L of the (act, depth) run, every measured step."""
    sub = pick(df, metric, act__name=act, model__depth=depth)
    return sub.assign(layer=sub["layer"].astype(int))


def epochs_of(df: pd.DataFrame, scale: str) -> list[int]:
    """The epochs the figure reads (the paper's, or the smaller scale's), those that were measured."""
    measured = set(pick(df, "grad_norm")["step"].astype(int))
    return [e for e in EPOCHS[scale] if e in measured] or [max(measured)]


def middle_median(df: pd.DataFrame, depth: int) -> float:
    """The median over the middle third of the layers, ℓ ∈ [L/3, 2L/3]."""
    mid = df[(df["layer"] >= depth / 3) & (df["layer"] <= 2 * depth / 3)]
    return float(mid["value"].median())


def panel(ax, df: pd.DataFrame, epochs: list[int], ylabel: str) -> None:
    for i, epoch in enumerate(epochs):
        at = df[df["step"] == epoch].sort_values("layer")
        ax.plot(at["layer"], at["value"], **{**style.series(i, f"epoch {epoch}"), "marker": ""})
    ax.set_yscale("log")
    ax.set_xlabel("layer ℓ")
    ax.set_ylabel(ylabel)


def grid_plot(metric: str, ylabel: str):
    def plot(frames, scale):
        df = frames["runs"]
        depths = sorted(int(d) for d in df["model.depth"].unique())
        fig, axes = style.new_figure(ncols=2, nrows=len(depths), width=3.2, height=2.2)
        for row, depth in enumerate(depths):
            for col, act in enumerate(("sin", "tanh")):
                ax = axes[row * 2 + col]
                panel(ax, per_layer(df, metric, act, depth), epochs_of(df, scale), ylabel)
                ax.set_title(f"{act}, depth {depth} ({scale})")
        style.legend(axes[0])
        return fig
    return plot


def claims_g1(frames, scale):
    df = frames["runs"]
    depths = sorted(int(d) for d in df["model.depth"].unique())
    shallow, deep = depths[0], depths[-1]
    last = epochs_of(df, scale)[-1]
    out = []
    for act in ("sin", "tanh"):
        at = {d: per_layer(df, "weight_isometry_gap", act, d) for d in (deep, shallow)}
        lo, hi = (middle_median(at[d][at[d]["step"] == last], d) for d in (deep, shallow))
        out.append(Claim.below(f"{act}, epoch {last}: middle-third median φ(W), depth {deep} / depth {shallow}",
                               lo / hi, 1.0, "the deeper net's middle layers are closer to orthogonal"))
    return out


def claims_g2(frames, scale):
    df = frames["runs"]
    out = []
    for act in ("sin", "tanh"):
        for depth in sorted(int(d) for d in df["model.depth"].unique()):
            g = per_layer(df, "grad_norm", act, depth)
            ratios = [middle_median(g[g["step"] == e], depth) / float(g[(g["step"] == e) & (g["layer"] == 0)]
                                                                      ["value"].iloc[0])
                      for e in epochs_of(df, scale)]
            out.append(Claim.above(f"{act}, depth {depth}: middle-third median ‖∇W_ℓ‖ / ‖∇W_0‖, smallest over "
                                   "epochs", min(ratios), 0.05, "the middle layers' gradients do not vanish"))
    return out


def fig6_run(df: pd.DataFrame) -> int:
    return int(df["model.depth"].max())


def plot_fig6(frames, scale):
    df = frames["runs"]
    depth = fig6_run(df)
    fig, axes = style.new_figure(ncols=2, width=3.6)
    for ax, (metric, label) in zip(axes, METRICS):
        panel(ax, per_layer(df, metric, "tanh", depth), epochs_of(df, scale), label)
        ax.set_title(f"tanh, depth {depth} ({scale})")
    style.legend(axes[0])
    return fig


def claims_fig6(frames, scale):
    df = frames["runs"]
    depth = fig6_run(df)
    epochs = epochs_of(df, scale)
    first, last = epochs[0], epochs[-1]
    phi = per_layer(df, "weight_isometry_gap", "tanh", depth)
    grad = per_layer(df, "grad_norm", "tanh", depth)
    at = phi[phi["step"] == last]
    ends = min(float(at.loc[at["layer"] == 0, "value"].iloc[0]), float(at.loc[at["layer"] == depth, "value"].iloc[0]))
    mid = depth // 2

    def value(frame: pd.DataFrame, step: int, layer: int) -> float:
        return float(frame[(frame["step"] == step) & (frame["layer"] == layer)]["value"].iloc[0])

    return [
        Claim.below(f"epoch {last}: middle-third median φ(W) / min(φ(W_0), φ(W_L))", middle_median(at, depth) / ends,
                    0.2, "the middle layers stay almost orthogonal"),
        Claim.below(f"φ(W_{mid}) at epoch {last}", value(phi, last, mid), 1e-2, "small (≈ 1e-5 … 1e-4 at L = 1000)"),
        Claim.above(f"φ(W_{mid}): epoch {last} − epoch {first}", value(phi, last, mid) - value(phi, first, mid), 0.0,
                    "grows slowly with the epochs"),
        Claim.above(f"epoch {last}: ‖∇W_{mid}‖ / ‖∇W_0‖", value(grad, last, mid) / value(grad, last, 0), 0.1,
                    "the gradients are not negligible"),
    ]


SCALED = ("Paper scale: CIFAR-10, width 100, depths 100/500/1000, lr 0.001, epochs 50–300 (not run here: ≈ 13 "
          "GPU-h). Quick: the spec's synthetic stand-in (10 classes of a random tanh teacher on 64-dim Gaussian "
          "inputs, 2 000 samples), width 32, depths 20 and 100, lr 0.05 (raised so that 15 epochs learn), epochs "
          "1/8/15; smoke: depths 8 and 24, 6 epochs. Measurements on a fixed batch of n = d samples in train mode with "
          "BN's running statistics restored (the paper's code let them move). Every weight matrix ℓ = 0 … L: fc_0 (the "
          "input projection), the square layers, the readout (ℓ = L, 10 × d).")
CAPTION_FIG6 = ("(a) Isometry gap φ(W_ℓ) = ln(AM/GM of the eigenvalues of W_ℓ W_ℓᵀ) and (b) gradient norm ‖∇W_ℓ‖_F "
                "of every layer of the deepest shaped-tanh BN MLP, one line per epoch. " + SCALED)
CAPTION_G1 = "Isometry gap φ(W_ℓ) per layer during training, sin and tanh, one row per depth. " + SCALED
CAPTION_G2 = "Gradient norm ‖∇W_ℓ‖_F per layer during training, sin and tanh, one row per depth. " + SCALED
PAPER_FIG6 = PaperCaption("Figure 6", (
    "Implicit orthogonality bias of SGD: the isometry gap (left) and the gradient norm (right) of the weights of "
    "each layer of an MLP with batch normalization and tanh activation, of depth 1000, trained on CIFAR10, at "
    "several epochs."))
PAPER_G1 = PaperCaption("Figure G1", (
    "Isometry gap of the weight matrices during training for MLPs of depth 100, 500 and 1000 with sin and tanh "
    "activations on CIFAR10."))
PAPER_G2 = PaperCaption("Figure G2", (
    "Frobenius norms of the gradients of the weight matrices during training for the runs of Figure G1."))
COSTS = Costs(quick="≈ 1 min, 2-core CPU", paper="≈ 13 GPU-h (spec estimate; shared with fig4, figH4)",
              data="CIFAR-10 (quick: synthetic)",
              basis="Spec depth Fig G1: six runs (sin/tanh × L = 100/500/1000) of ≥ 300 epochs of 500 steps, "
                    "launch-bound at ≈ 12·L kernels a step; the same runs as fig4 and figH4; not measured here.")

register(Figure("depth/fig6", "Implicit orthogonality bias of SGD: φ(W_ℓ) and ‖∇W_ℓ‖ per layer, depth 1000 tanh",
                CAPTION_FIG6, RUNS, plot_fig6, claims_fig6, kind="train", paper_caption=PAPER_FIG6, costs=COSTS))
register(Figure("depth/figG1", "Isometry gap of the weights during training, per layer and depth", CAPTION_G1, RUNS,
                grid_plot(*METRICS[0]), claims_g1, kind="train", paper_caption=PAPER_G1, costs=COSTS))
register(Figure("depth/figG2", "Gradient norms during training, per layer and depth", CAPTION_G2, RUNS,
                grid_plot(*METRICS[1]), claims_g2, kind="train", paper_caption=PAPER_G2, costs=COSTS))

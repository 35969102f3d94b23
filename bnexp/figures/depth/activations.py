"""depth/figH5: nonlinearities without gain — the gradient explodes and the last layer is not orthogonalized.

Setup (``configs/exp/depth_nonlin.yaml``): the paper's ``MLPWithBatchNorm`` at initialisation (see
:mod:`bnexp.figures.depth.gradients`) with identity, sin and tanh, no gain, Haar-orthogonal weights, the paper
code's uncentred BN √n·h/‖h‖, no bias, d = n; per depth, ln‖∇_{W_1} L‖_F and the isometry gap φ of the last
hidden layer's linear output (fc_{L−1}). Scales: :mod:`bnexp.figures.depth`.
"""

from __future__ import annotations

import numpy as np

from bnexp.figures import Claim, Costs, Figure, PaperCaption, register, stats, style
from bnexp.figures.depth import SLOPES_NO_GAIN, depth_runs
from bnexp.figures.stats import log_at_layer, pick, profile, profile_slope

ACTS = ("linear", "sin", "tanh")
RUNS = depth_runs("depth_nonlin")


def plot(frames, scale):
    df = frames["runs"]
    fig, axes = style.new_figure(ncols=2, width=3.4)
    for act in ACTS:
        for ax, sub in ((axes[0], log_at_layer(df, "grad_norm", 1, act__name=act)),
                        (axes[1], pick(df, "isometry_gap", act__name=act))):
            style.band(ax, stats.summarize(sub, "model.depth"), "model.depth", kind="act", name=act, marker=".")
    axes[1].set_yscale("log")
    for ax, title, ylabel in zip(axes, ("Gradient norm", "Isometry gap at the last layer"),
                                 (style.GRAD_W1, r"isometry gap $\phi(X_L)$")):
        ax.set_xlabel("depth L")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} ({scale})")
        style.legend(ax, title="Activation")
    return fig


def claims(frames, scale):
    df = frames["runs"]
    d = int(df["model.width"].iloc[0])
    # φ across weight draws is heavy-tailed at depth (one slow seed dominates the arithmetic mean), so the
    # decay claims use the geometric mean exp(mean ln φ)
    phi = pick(df, "isometry_gap", act__name="linear")  # probe.layers: last, one layer per run
    ident = profile(phi.assign(value=np.log(phi["value"].to_numpy(float))), "model.depth")
    deepest = int(ident.index.max())
    out = [Claim.below(f"identity: geometric-mean φ(X_L) at L = {deepest}", float(np.exp(ident[deepest])), 1e-2,
                       "decays exponentially (3e-4 at L = 1000)")]
    tail = ident[ident.index >= deepest / 2]
    if len(tail) >= 2:
        x0, x1 = int(tail.index[0]), int(tail.index[-1])
        rate = (tail.iloc[0] - tail.iloc[-1]) / (x1 - x0)
        out.append(Claim.within(f"identity: tail decay rate of ln φ (L = {x0} → {x1}) over 2/(d+2)",
                                rate * (d + 2) / 2, 0.7, 1.3, "exponential decay"))
    for act in ("sin", "tanh"):
        phi = profile(pick(df, "isometry_gap", act__name=act), "model.depth")
        out.append(Claim.within(f"{act}: smallest φ(X_L) over depths", float(phi.min()), 0.5, 2.0,
                                "≈ 1 at every depth: no orthogonalization"))
        out.append(Claim.within(f"{act}: largest φ(X_L) over depths", float(phi.max()), 0.5, 2.0, "≈ 1"))
        lo, hi, paper = SLOPES_NO_GAIN[act]
        out.append(Claim.within(f"{act}: slope of ln‖∇W_1‖ per layer",
                                profile_slope(profile(log_at_layer(df, "grad_norm", 1, act__name=act),
                                                      "model.depth")), lo, hi, paper))
    return out


CAPTION = (
    "Without gain: ln‖∇_{W_1} L‖_F (left) and the isometry gap φ of the last hidden layer's linear output "
    "(right, log axis) vs depth for identity, sin and tanh; Haar-orthogonal weights, no bias, d = n; mean and "
    "95% CI over 10 weight draws. Decision: the caption says \"standard modules\", but the plot's identity "
    "φ → 3e-4 at L = 1000 is impossible with centred BN (the centred batch is singular), so the BN is the "
    "paper code's uncentred √n·h/‖h‖. φ over weight draws is heavy-tailed at depth (one slow draw dominates "
    "the mean), so the decay claims use its geometric mean.")
PAPER_CAPTION = PaperCaption("Figure H5", (
    "Left: average log-norm of gradients (log-scale y-axis) at the first layer for networks with different depths, "
    "evaluated on CIFAR10. Right: Isometry gap (log-scale y-axis) at the last layer for networks with different "
    "depths, evaluated on CIFAR10. The MLP is initialized with orthogonal weights and batch normalization, with "
    "standard modules, with sin, tanh, identity non-linearities. After stabilizing the isometry gap, the "
    "non-linearities have an exponential gradient explosion."))
COSTS = Costs(
    quick="≈ 10 s, 2-core CPU", paper="≈ 1 min, 2-core CPU (scaled from depth/fig3)", data="CIFAR-10 (100 images)",
    basis="3 activations × 8 depths (5–1000), 10 seeds, bn_theory without bias (the depth/fig3 model), i.e. 1.5× the "
          "work of depth/fig3: scaled from the measured depth/fig3 sweep (docs/performance.md: 16 runs, d = n = 100, "
          "10 seeds, depths 5–1000, 37 s with a stand-in batch of the CIFAR shape; ≈ 18.5 s per 8-depth sweep).")

register(Figure("depth/figH5", "Nonlinearities without gain: explosion and no orthogonalization", CAPTION, RUNS,
                plot, claims, paper_caption=PAPER_CAPTION, costs=COSTS))

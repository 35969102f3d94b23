"""depth/figJ1: residual BN networks with Gaussian weights — the gradient is not bounded in depth.

ASSUMED setup (``configs/exp/depth_residual.yaml``; the paper specifies none for this figure): a residual BN MLP
x ← x + σ(BN(W x)) behind an input projection, Gaussian weights (xavier_normal, gain 1), centred BN without eps,
no bias, d = n, identity/sin/tanh, at initialisation (see :mod:`bnexp.figures.depth.gradients` for how the
gradient is measured). Scales: :mod:`bnexp.figures.depth` (quick: depths 5, 20, 100, 200; smoke: up to 100).
"""

from __future__ import annotations

import numpy as np

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.depth import QUICK, SMOKE
from bnexp.figures.stats import log_at_layer, profile

ACTS = ("linear", "sin", "tanh")
RUNS = {
    "paper": {"runs": RunGrid("depth_residual")},
    "quick": {"runs": RunGrid("depth_residual", QUICK, {"model.depth": [5, 20, 100, 200]})},
    "smoke": {"runs": RunGrid("depth_residual", SMOKE, {"model.depth": [5, 20, 100]})},
}


def plot(frames, scale):
    fig, axes = style.new_figure(width=4.0)
    ax = axes[0]
    for act in ACTS:
        sub = log_at_layer(frames["runs"], "grad_norm", 1, act__name=act)
        style.band(ax, stats.summarize(sub, "model.depth"), "model.depth", kind="act", name=act, marker=".")
    ax.set_xlabel("depth L")
    ax.set_ylabel(style.GRAD_W1)
    ax.set_title(f"Residual BN MLP, Gaussian weights — assumed setup ({scale})")
    style.legend(ax, title="Activation")
    return fig


def claims(frames, scale):
    out = []
    for act in ACTS:
        label = style.of("act", act)["label"]
        prof = profile(log_at_layer(frames["runs"], "grad_norm", 1, act__name=act), "model.depth")
        out.append(Claim.above(f"{label}: smallest increment between consecutive depths",
                               float(np.diff(prof.to_numpy()).min()), 0.0, "not bounded: grows with depth"))
        span = f"value(L={int(prof.index.max())}) − value(L={int(prof.index.min())})"
        out.append(Claim.above(f"{label}: {span}", float(prof.iloc[-1] - prof.iloc[0]), 1.0, "grows with depth"))
    return out


CAPTION = (
    "ASSUMED SETUP (the paper specifies none for this figure): ln‖∇ L‖_F of the first block's weight vs depth "
    "for a residual BN MLP x ← x + σ(BN(W x)) behind an input projection, Gaussian weights (xavier_normal, "
    "gain 1), centred BN without eps, no bias, d = n, identity/sin/tanh; mean and 95% CI over 10 weight draws. "
    "The claim checked is the paper's: with residual connections and Gaussian weights the gradient is not "
    "bounded in depth.")
PAPER_CAPTION = PaperCaption("Figure J1", (
    "Logarithmic plot for the gradient norm of the first layer for residual networks with batch normalization "
    "initialized with Gaussian weights at different depths, evaluated on CIFAR10. The traces show that the "
    "gradients do not remain bounded in depth for different activations."))
COSTS = Costs(
    quick="≈ 5 s, 2-core CPU", paper="≈ 1 min, 2-core CPU (probe + scaled)", data="CIFAR-10 (100 images)",
    basis="3 activations × 8 depths (5–1000), 10 seeds, residual MLP; one depth-1000 run probed here at 7.6 s "
          "(stand-in batch, machine shared with another job), so each 8-depth sweep ≈ 14 s, ≈ 45 s of runs plus "
          "start-up and plot.")

register(Figure("depth/figJ1", "Residual BN networks with Gaussian weights (assumed setup)", CAPTION, RUNS, plot,
                claims, paper_caption=PAPER_CAPTION, costs=COSTS))

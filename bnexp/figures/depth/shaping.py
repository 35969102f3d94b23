"""depth/fig5: activation shaping removes the gradient explosion of sin and tanh.

Setup (``configs/exp/depth_gain.yaml``): the paper's ``MLPWithBatchNorm`` at initialisation (see
:mod:`bnexp.figures.depth.gradients`) with Haar-orthogonal weights, torch BatchNorm and biases; per depth,
ln‖∇_{W_1} L‖_F without gain and with the shaped activation σ(α_ℓ x), α_ℓ = (ℓ+1)^(−γ), γ = 0.4, for identity,
sin and tanh. Scales: :mod:`bnexp.figures.depth`.
"""

from __future__ import annotations

import numpy as np

from bnexp.figures import Claim, Costs, Figure, PaperCaption, register, style
from bnexp.figures.depth import SLOPES_NO_GAIN, depth_runs
from bnexp.figures.depth.gradients import ACTS, depth_axes, depth_curve, log_grad
from bnexp.figures.stats import profile, profile_slope

GAIN = 0.4  # the shaped gain's exponent: α_ℓ = (ℓ+1)^(−0.4)

FIG5_RUNS = depth_runs("depth_gain")


def plot_fig5(frames, scale):
    fig, axes = style.new_figure(ncols=2, width=3.4)
    for ax, exponent, title in zip(axes, (0.0, GAIN), ("Without gain", "With gain")):
        for act in ACTS:
            depth_curve(ax, log_grad(frames["runs"], act__name=act, model__gain_exponent=exponent), kind="act",
                        name=act)
        depth_axes(ax)
        ax.set_title(f"{title} ({scale})")
        style.legend(ax, title="Activation")
    return fig


def claims_fig5(frames, scale):
    profiles = {(act, e): profile(log_grad(frames["runs"], act__name=act, model__gain_exponent=e), "model.depth")
                for act in ACTS for e in (0.0, GAIN)}
    claims = [Claim.within(f"without gain, {act}: slope per layer", profile_slope(profiles[(act, 0.0)]), lo, hi,
                           paper) for act, (lo, hi, paper) in SLOPES_NO_GAIN.items()]
    claims.append(Claim.below("without gain, identity: |slope| per layer",
                              abs(profile_slope(profiles[("linear", 0.0)])), 0.005, "flat ≈ 0.4"))
    for act in ACTS:
        prof, label = profiles[(act, GAIN)], style.of("act", act)["label"]
        claims.append(Claim.below(f"with gain, {label}: |slope| per layer", abs(profile_slope(prof)), 0.01,
                                  "bounded (slightly decreasing)"))
        claims.append(Claim.at_most(f"with gain, {label}: value(L={int(prof.index.max())}) − "
                                    f"value(L={int(prof.index.min())})", float(prof.iloc[-1] - prof.iloc[0]), 0.5,
                                    "no explosion"))
    # identity: BN cancels every gain but the last, so ln‖∇‖ drops by γ ln L (exact up to the CE's logit scale)
    without, with_ = profiles[("linear", 0.0)], profiles[("linear", GAIN)]
    gap = (with_ - (without - GAIN * np.log(without.index.to_numpy(float)))).abs().max()
    claims.append(Claim.at_most("identity: max |with − (without − 0.4 ln L)| over depths", float(gap), 0.2,
                                "≈ 0.4 − 0.4 ln 1000 = −2.36 at L = 1000 (plot −2.35)"))
    return claims


FIG5_CAPTION = (
    "ln‖∇_{W_1} L‖_F vs depth without and with the shaped activation σ(α_ℓ x), α_ℓ = (ℓ+1)^(−0.4), for identity, "
    "sin and tanh; Haar-orthogonal weights, torch BatchNorm in train mode (centred, eps 1e-5, affine at init), "
    "Linear biases with PyTorch's default init, d = n; mean and 95% CI over 10 weight draws. Float64: the "
    "paper's float32 dropped sin at L ≥ 500 and tanh at L = 1000 (overflow); ours shows them. The "
    "identity-with-gain check uses that BN cancels every gain but the last.")
FIG5_PAPER_CAPTION = PaperCaption("Figure 5", (
    "Logarithmic plot contrasting the effect of gain on the gradient at initialization of the first layer, for "
    "networks with different number of layers initialized with orthogonal weights, BN and different activations, "
    "evaluated on CIFAR10. The networks have hyperparameters width 100, batch size 100. Traces are averaged over 10 "
    "independent runs, with the shades showing the 95% confidence interval."))
FIG5_COSTS = Costs(
    quick="≈ 25 s, 2-core CPU", paper="≈ 3 min, 2-core CPU (measured)", data="CIFAR-10 (100 images)",
    basis="Measured in docs/performance.md: the paper-size sweep (48 runs = 3 activations × 2 gain exponents × 8 "
          "depths, 10 seeds, biases) took 2 min 45 s with a stand-in batch of the CIFAR shape; excludes the CIFAR-10 "
          "download.")

register(Figure("depth/fig5", "Activation shaping removes gradient explosion", FIG5_CAPTION, FIG5_RUNS,
                plot_fig5, claims_fig5, paper_caption=FIG5_PAPER_CAPTION, costs=FIG5_COSTS))

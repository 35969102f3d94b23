"""beyond/norms-gradients: ln‖∇_{W_1} L‖_F against depth at initialisation for the depth paper's BN and the
per-sample normalisations and weight normalisation against none — depth/fig3's setup (orthogonal weights, identity,
BN without centring) asked of LayerNorm, RMSNorm, GroupNorm and weight norm, which the paper's Theorem 5 (a
statement about BN) does not cover.

The runs are ``configs/exp/beyond_norms_gradients.yaml`` (it includes depth/fig3's ``depth_init_base``), at the
depth figures' scales (:func:`bnexp.figures.depth.depth_runs`: the paper's CIFAR-10 batch, or one Gaussian batch
with d = n = 32 at quick and smoke scale).
"""

from __future__ import annotations

from bnexp.figures import Claim, Costs, Figure, register, style
from bnexp.figures.beyond import setup_caption
from bnexp.figures.beyond.norms import PER_SAMPLE
from bnexp.figures.depth import depth_runs
from bnexp.figures.depth.gradients import FIG3_PAPER_CAPTION, depth_axes, depth_curve, log_grad
from bnexp.figures.stats import profile, profile_slope

NORMS = ("none", "bn_theory", *PER_SAMPLE, "weightnorm")
RUNS = depth_runs("beyond_norms_gradients")
BOUNDED = 0.003  # |slope| per layer of a bounded curve (depth/fig3's rule for orthogonal BN)
# What each per-sample norm and weight norm does, as measured: "bounded" (|slope| < BOUNDED) or "explodes"
# (slope > 2·BOUNDED).
FOUND = {"layernorm": "bounded", "rmsnorm": "bounded", "groupnorm": "explodes", "weightnorm": "bounded"}


def curves(df) -> dict[str, object]:
    """ln‖∇W_1‖ against depth, seed mean, per norm."""
    return {norm: profile(log_grad(df, norm__name=norm), "model.depth") for norm in NORMS}


def plot(frames, scale):
    fig, axes = style.new_figure(width=4.4, height=3.0)
    for norm in NORMS:
        depth_curve(axes[0], log_grad(frames["runs"], norm__name=norm), kind="norm", name=norm)
    depth_axes(axes[0])
    axes[0].set_xscale("log")
    axes[0].set_title(f"Orthogonal weights, identity ({scale})")
    style.legend(axes[0], ncol=2)
    return fig


def claims(frames, scale):
    found = curves(frames["runs"])
    out = [Claim.below("BN: |slope of ln‖∇W_1‖ per layer|", abs(profile_slope(found["bn_theory"])), BOUNDED,
                       "bounded with orthogonal weights (depth/fig3, Theorem 5)"),
           Claim.below("vanilla: |slope per layer| (an orthogonal linear net is an isometry)",
                       abs(profile_slope(found["none"])), BOUNDED, "not stated (orthogonal maps keep norms)")]
    for norm in (*PER_SAMPLE, "weightnorm"):
        label = style.of("norm", norm)["label"]
        slope = profile_slope(found[norm])
        if FOUND[norm] == "bounded":
            out.append(Claim.below(f"{label}: |slope per layer| (measured: bounded)", abs(slope), BOUNDED,
                                   "not covered by the paper"))
        else:
            out.append(Claim.above(f"{label}: slope per layer (measured: explodes)", slope, 2 * BOUNDED,
                                   "not covered by the paper"))
    return out


CAPTION = (
    "ln‖∇_{W_1} L‖_F (fc_1, the first square weight) against depth at initialisation, Haar-orthogonal weights, "
    "identity activation, no bias, d = n, one fixed batch, float64; no normalisation, the depth paper's BN "
    "(√n·h/‖h‖ per feature, no centring), the per-sample LayerNorm, RMSNorm and GroupNorm (8 groups) and weight "
    "normalisation (W = g·V/‖V‖ per row, the gradient of V; the same function as vanilla at init); mean and 95% CI "
    "over seeds. The paper's Theorem 5 bounds BN's gradients with orthogonal weights; the per-sample norms "
    "are outside it and measured here. Measured: LayerNorm and RMSNorm stay bounded like BN (a per-sample rescaling "
    "of an orthogonal linear net is nearly an isometry: slopes ≈ 3e-4 and 1e-5 per layer at quick scale), while "
    "GroupNorm's gradients explode, ≈ 0.2 per layer in ln‖∇W_1‖ at quick scale (8 groups of 4 features: each "
    "sample's feature blocks are rescaled differently, so the layer is no longer close to an isometry); weight "
    "normalisation stays bounded like the vanilla net it equals at init. The claims give the numbers of this run. "
    "Setup as depth/fig3 (CIFAR-10 batch at paper scale, one Gaussian batch with d = n = 32 at quick scale).")

register(Figure("beyond/norms-gradients", "Gradient norm vs depth for BN, the per-sample norms and weight norm",
                CAPTION,
                RUNS, plot, claims,
                paper_caption=setup_caption(FIG3_PAPER_CAPTION, "depth"),
                costs=Costs(quick="≈ 10 s, 2-core CPU", paper="≈ 2 min, 2-core CPU (estimated from depth/fig3)",
                            data="CIFAR-10 (100 images)",
                            basis="40 runs (5 norms × 8 depths 5–1000), 10 seeds, d = n = 100: 2.5 × depth/fig3's "
                                  "measured sweep (37 s for 16 runs); excludes the CIFAR-10 download.")))

"""The depth paper's gradient norm against depth at initialisation: depth/fig2 (degenerate inputs), fig3
(orthogonal vs Gaussian weights), fig5 (activation shaping), figH6 (mean reduction and the 1/n factor).

Every figure is a sweep of ``bnexp train`` with ``optim.epochs = 0`` (one forward of one fixed input batch in
train mode, one backward of the mean cross-entropy; ten seeds re-draw the weights only, the paper reuses one
batch) of the paper's ``MLPWithBatchNorm``: fc_0 (d_in → d), then per hidden layer ℓ ``x = σ(α_ℓ · BN(fc_ℓ(x)))``,
then the readout; ``W_ℓ`` is fc_ℓ, so the paper's ``‖∇_{W_1} L‖`` is the gradient of fc_1, the first square
weight. Float64: the paper's float32 runs overflowed past ln‖∇‖ ≈ 44 and silently dropped those points, ours
keeps them. Each caption states the BN variant (the paper's code uses three). Scales: :mod:`bnexp.figures.depth`.
"""

from __future__ import annotations

import math

import numpy as np

from bnexp.figures import Claim, Figure, register, stats, style
from bnexp.figures.depth import SLOPES_NO_GAIN, depth_runs
from bnexp.figures.stats import log_at_layer, profile, profile_slope

ACTS = ("linear", "sin", "tanh")
GAIN = 0.4  # the shaped gain's exponent: α_ℓ = (ℓ+1)^(−0.4)


def log_grad(df, layer: int = 1, **eq):
    """ln ‖∂L/∂W_layer‖_F per run and seed."""
    return log_at_layer(df, "grad_norm", layer, **eq)


def depth_curve(ax, sub, **look) -> None:
    """Mean ± 95% CI over seeds of ``sub``'s value against depth."""
    style.band(ax, stats.summarize(sub, "model.depth"), "model.depth", marker=".", **look)


def depth_axes(ax, ylabel: str = "ln ‖∇_{W_1} L‖_F") -> None:
    ax.set_xlabel("depth L")
    ax.set_ylabel(ylabel)


# ----------------------------------------------------------------------------------------------- depth/fig2

FIG2_RUNS = depth_runs("depth_degenerate", quick_grid={"data.distinct": [None, 8]},
                       smoke_grid={"data.distinct": [None, 8]})


def _split(g):
    """(non-degenerate rows, degenerate rows) of a frame of the depth_degenerate sweep."""
    return g[g["data.distinct"].isna()], g[g["data.distinct"].notna()]


def plot_fig2(frames, scale):
    fig, axes = style.new_figure(width=4.0)
    for i, (sub, label) in enumerate(zip(_split(log_grad(frames["runs"])), ("Non-degenerate", "Degenerate"))):
        depth_curve(axes[0], sub, color=style.series(i)["color"], label=label)
    depth_axes(axes[0])
    axes[0].set_title(f"Degenerate vs non-degenerate inputs ({scale})")
    axes[0].legend(title="Inputs")
    return fig


def claims_fig2(frames, scale):
    df = frames["runs"]
    nondeg, deg = (profile(sub, "model.depth") for sub in _split(log_grad(df)))
    k = int(df.loc[df["data.distinct"].notna(), "data.distinct"].iloc[0])
    n = int(df["data.batch_size"].iloc[0])
    deepest = int(nondeg.index.max())
    claims = [
        Claim.below("non-degenerate: |slope of ln‖∇W_1‖ vs depth| per layer", abs(profile_slope(nondeg)), 0.003,
                    "bounded for every depth (≈ −1.9 flat)"),
        Claim.above(f"degenerate ({k} distinct × {n // k}): slope per layer", profile_slope(deg), 0.02,
                    "explodes with depth (≈ 28.5 at L = 1000)"),
        Claim.above(f"degenerate − non-degenerate at L = {deepest}", float(deg[deepest] - nondeg[deepest]),
                    10.0 if deepest >= 1000 else 5.0, "gap ≈ 30 at L = 1000"),
    ]
    if scale == "paper":
        claims.append(Claim.within("non-degenerate level (mean over depths), CIFAR-10 batch",
                                   float(nondeg.mean()), -2.5, -1.3, "≈ −1.9"))
    return claims


FIG2_CAPTION = (
    "ln‖∇_{W_1} L‖_F (fc_1, the first square weight) vs depth for a batch of n distinct samples and a degenerate "
    "batch of k distinct samples each repeated n/k times; identity, Haar-orthogonal weights, BN h/‖h‖ (eq. 4; "
    "inferred from the plot's level, the paper has no code for this figure), no bias, d = n; mean and 95% CI "
    "over 10 weight draws. Decisions: the paper says only \"repeated samples\"; paper scale uses 10 distinct "
    "CIFAR-10 images × 10 copies (the explosion rate depends strongly on the number of distinct samples), "
    "quick 8 distinct Gaussian samples × 4 with d = n = 32.")
register(Figure("depth/fig2", "Gradients explode only for degenerate input batches", FIG2_CAPTION, FIG2_RUNS,
                plot_fig2, claims_fig2))

# ----------------------------------------------------------------------------------------------- depth/fig3

FIG3_RUNS = depth_runs("depth_init")
FIG3_INITS = (("orthogonal", "Orthogonal"), ("xavier_normal", "Normal"))


def plot_fig3(frames, scale):
    fig, axes = style.new_figure(width=4.0)
    for init, label in FIG3_INITS:
        depth_curve(axes[0], log_grad(frames["runs"], init__name=init), kind="init", name=init, label=label)
    depth_axes(axes[0])
    axes[0].set_title(f"Orthogonal vs Gaussian weights ({scale})")
    axes[0].legend(title="Initialization")
    return fig


def claims_fig3(frames, scale):
    orth, gauss = (profile(log_grad(frames["runs"], init__name=init), "model.depth") for init, _ in FIG3_INITS)
    lo, hi = int(orth.index.min()), int(orth.index.max())
    deep = gauss.index[gauss.index >= 50]
    return [
        Claim.below("orthogonal: |slope| per layer", abs(profile_slope(orth)), 0.003, "bounded, flat (≈ 0.35–0.40)"),
        Claim.below("orthogonal: max − min over depths", float(orth.max() - orth.min()), 0.5, "flat"),
        Claim.above("Gaussian: slope per layer", profile_slope(gauss), 0.006, "grows with depth (≈ 0.012/layer)"),
        Claim.above(f"Gaussian: value(L={hi}) − value(L={lo})", float(gauss[hi] - gauss[lo]),
                    5.0 if hi >= 1000 else 1.5, "0.7 → 10.3 from L = 5 to 1000"),
        Claim.above("Gaussian − orthogonal, smallest over L ≥ 50", float((gauss[deep] - orth[deep]).min()), 0.0,
                    "Gaussian above orthogonal"),
    ]


FIG3_CAPTION = (
    "ln‖∇_{W_1} L‖_F vs depth with Haar-orthogonal weights and with Gaussian weights (xavier_normal, gain 1), "
    "identity, BN √n·h/‖h‖ (uncentred, unit second moment: the paper code's norm_type='bn'), no bias, d = n; "
    "mean and 95% CI over 10 weight draws. The paper's curve is ≈ 0.4 higher with CIFAR-10 than ours with "
    "Gaussian inputs at quick scale; the shapes are the claim.")
register(Figure("depth/fig3", "Orthogonal vs Gaussian weights: bounded vs exploding gradients", FIG3_CAPTION,
                FIG3_RUNS, plot_fig3, claims_fig3))

# ----------------------------------------------------------------------------------------------- depth/fig5

FIG5_RUNS = depth_runs("depth_gain")


def plot_fig5(frames, scale):
    fig, axes = style.new_figure(ncols=2, width=3.4)
    for ax, exponent, title in zip(axes, (0.0, GAIN), ("Without gain", "With gain")):
        for act in ACTS:
            depth_curve(ax, log_grad(frames["runs"], act__name=act, model__gain_exponent=exponent), kind="act",
                        name=act)
        depth_axes(ax)
        ax.set_title(f"{title} ({scale})")
        ax.legend(title="Activation")
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
register(Figure("depth/fig5", "Activation shaping removes gradient explosion", FIG5_CAPTION, FIG5_RUNS,
                plot_fig5, claims_fig5))

# ----------------------------------------------------------------------------------------------- depth/figH6

FIGH6_RUNS = depth_runs("depth_center")
FIGH6_NORMS = (("bn_center", "With"), ("bn_theory", "Without"))


def plot_figH6(frames, scale):
    fig, axes = style.new_figure(width=4.0)
    for norm, label in FIGH6_NORMS:
        depth_curve(axes[0], log_grad(frames["runs"], 0, norm__name=norm), kind="norm", name=norm, label=label)
    depth_axes(axes[0], "ln ‖∇_{W_0} L‖_F (fc_0)")
    axes[0].set_title(f"Mean reduction and the 1/n factor ({scale})")
    axes[0].legend(title="Mean reduction")
    return fig


def claims_figH6(frames, scale):
    df = frames["runs"]
    n = int(df["data.batch_size"].iloc[0])
    with_, without = (profile(log_grad(df, 0, norm__name=norm), "model.depth") for norm, _ in FIGH6_NORMS)
    offset = float((with_ - without).mean())
    return [
        Claim.within("mean offset with − without, minus ln √n", offset - math.log(math.sqrt(n)), -0.5, 0.5,
                     "separated by ≈ ln √n (2.0 vs −0.45 at L = 5, n = 100)"),
        Claim.below("with mean reduction: slope per layer", profile_slope(with_), 0.006, "bounded (mild growth)"),
        Claim.below("without: slope per layer", profile_slope(without), 0.006, "bounded (mild growth)"),
    ]


FIGH6_CAPTION = (
    "ln‖∇ L‖_F of fc_0 (the input projection; the paper's code reads this weight under the label W_1) vs depth "
    "for centred BN √n(h − h̄)/‖h − h̄‖ (\"with\" mean reduction, no eps) and the theory's h/‖h‖ (\"without\": "
    "no centring, no √n); identity, Haar-orthogonal weights, no bias, d = n; mean and 95% CI over 10 weight "
    "draws. The two differ by ≈ ln √n in level and both stay bounded.")
register(Figure("depth/figH6", "Mean reduction and the 1/n factor do not change boundedness", FIGH6_CAPTION,
                FIGH6_RUNS, plot_figH6, claims_figH6))

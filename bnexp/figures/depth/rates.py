"""depth/figF1, figF2: the per-layer explosion rate of the gradient against a constant gain α (F1) and against
the exponent of a shaped gain α_ℓ = (ℓ+1)^exponent (F2).

Setup (``configs/exp/depth_rate_gain.yaml``, ``depth_rate_exponent.yaml``): the paper's ``MLPWithBatchNorm`` at
initialisation (see :mod:`bnexp.figures.depth.gradients`), sin and tanh, torch BatchNorm with biases,
Haar-orthogonal weights, d = n; paper scale L = 1000 (F1) and L ∈ {100, 200, 500, 1000} (F2) on the CIFAR-10
batch, 10 seeds. Quick: L = 100, 3 seeds, fewer gains; smoke: shorter still (:data:`bnexp.figures.depth.QUICK`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.depth import QUICK, QUICK_DEPTHS, SMOKE, SMOKE_DEPTHS
from bnexp.figures.stats import log_at_layer, pick, profile, profile_slope

WINDOW = 10  # the rate's window: (ln‖∇W_ℓ‖ − ln‖∇W_{ℓ+10}‖)/10


def explosion_rates(df: pd.DataFrame, layers, by=()) -> pd.DataFrame:
    """Per run, seed and ℓ: (ln‖∇W_ℓ‖ − ln‖∇W_{ℓ+10}‖)/10 (> 0 when gradients grow toward the input).

    The depth paper's Eq. 165 as printed has the opposite sign and looks back from ℓ; this is the form that
    reproduces its Figs F1 and F2 (forward window, positive for explosion).
    """
    wide = pick(df, "grad_norm").pivot_table(index=[*by, "seed"], columns="layer", values="value", aggfunc="first")
    rows = []
    for ell in layers:
        if ell not in wide.columns or ell + WINDOW not in wide.columns:
            raise ValueError(f"explosion rate at ℓ = {ell} needs weight layers {ell} and {ell + WINDOW}")
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = (np.log(wide[ell]) - np.log(wide[ell + WINDOW])) / WINDOW
        rows.append(rate.rename("value").reset_index().assign(ell=ell))
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------------------------- depth/figF1

F1_LAYERS = {"paper": [100, 200, 400, 800], "quick": [30, 60, 80], "smoke": [30, 60]}  # ℓ + 10 < L: never the readout
SIN_NO_GAIN = {"act": "sin", "model.gain_exponent": 0.0}  # depth/fig5's sin curve without gain
FIGF1_RUNS = {
    "paper": {"runs": RunGrid("depth_rate_gain"), "fig5": RunGrid("depth_gain", SIN_NO_GAIN)},
    "quick": {"runs": RunGrid("depth_rate_gain", {**QUICK, "model.depth": 100, "n_seeds": 3},
                              {"model.gain": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}),
              "fig5": RunGrid("depth_gain", {**QUICK, **SIN_NO_GAIN}, {"model.depth": QUICK_DEPTHS})},
    "smoke": {"runs": RunGrid("depth_rate_gain", {**QUICK, "model.depth": 80, "n_seeds": 2},
                              {"model.gain": [0.6, 0.8, 1.0]}),
              "fig5": RunGrid("depth_gain", {**SMOKE, **SIN_NO_GAIN}, {"model.depth": SMOKE_DEPTHS})},
}
FIT_MIN_RATE = 0.005  # rates below this are noise (they can even be negative): the power law is fitted above it


def power_law(rates: pd.DataFrame) -> tuple[float, float]:
    """(c₁, c₂) of R ≈ c₁ α^{c₂}, least squares in log-log over the seed/layer-mean rates above FIT_MIN_RATE."""
    mean = rates.groupby("model.gain")["value"].mean()
    mean = mean[mean > FIT_MIN_RATE]
    slope, intercept = stats.fit_slope(np.log(mean.index.to_numpy(float)), np.log(mean.to_numpy(float)))
    return math.exp(intercept), slope


def plot_figF1(frames, scale):
    rates = explosion_rates(frames["runs"], F1_LAYERS[scale], by=["act.name", "model.gain"])
    c1, c2 = power_law(rates[rates["act.name"] == "sin"])
    fig, axes = style.new_figure(ncols=2, width=3.4)
    for ax, act in zip(axes, ("sin", "tanh")):
        sub = rates[rates["act.name"] == act]
        style.bands(ax, sub, "model.gain", "ell", label="ℓ = {}".format, marker=".", linestyle="-")
        alphas = np.linspace(sub["model.gain"].min(), sub["model.gain"].max(), 50)
        style.reference(ax, alphas, c1 * alphas**c2, f"${c1:.3f}\\,\\alpha^{{{c2:.2f}}}$ (sin fit)")
        ax.set_xlabel("gain α")
        ax.set_ylabel("rate")
        ax.set_title(f"{act} ({scale})")
        style.legend(ax)
    return fig


def claims_figF1(frames, scale):
    rates = explosion_rates(frames["runs"], F1_LAYERS[scale], by=["act.name", "model.gain"])
    claims = []
    for act in ("sin", "tanh"):
        mean = rates[rates["act.name"] == act].groupby("model.gain")["value"].mean().sort_index()
        claims.append(Claim.above(f"{act}: smallest increment of the rate between consecutive α (tolerance "
                                  "0.003)", float(np.diff(mean.to_numpy()).min()), -0.003, "rate increases with α"))
    c1, c2 = power_law(rates[rates["act.name"] == "sin"])
    claims.append(Claim.within("sin: fitted exponent c₂ of R ≈ c₁α^{c₂}", c2, 2.5, 4.0, "c₂ ≈ 3"))
    claims.append(Claim.within("sin: fitted c₁", c1, 0.09, 0.16, "c₁ ≈ 0.125"))
    sin_one = rates[(rates["act.name"] == "sin") & (rates["model.gain"] == 1.0)]["value"].mean()
    slope = profile_slope(profile(log_at_layer(frames["fig5"], "grad_norm", 1), "model.depth"))
    claims.append(Claim.within("sin: rate at α = 1 over the depth/fig5 slope without gain", float(sin_one / slope),
                               0.85, 1.15, "at α = 1 the rate is Fig 5's explosion slope"))
    return claims


FIGF1_CAPTION = (
    "Per-layer explosion rate R = (ln‖∇W_ℓ‖ − ln‖∇W_{ℓ+10}‖)/10 at several layers ℓ vs a constant pre-activation "
    "gain α at every layer, sin and tanh; torch BatchNorm, biases, Haar-orthogonal weights, d = n; mean and 95% "
    "CI over seeds; dashed: the least-squares power law c₁α^{c₂} fitted to sin's rates above 0.005 (smaller "
    "rates are noise), drawn in both panels. Decisions: the printed eq. 165 has the opposite sign and looks "
    "back from ℓ, the form used reproduces the plots; the ICLR text's \"c₁α²\" is read as c₁α^{c₂} (free c₂, "
    "as the v1 legend); quick scale uses L = 100, α ≥ 0.5, 3 seeds.")
FIGF1_PAPER_CAPTION = PaperCaption("Figure F1", (
    "Explosion rate of the log norm of the gradients at initialization for an MLP model with orthogonal weights and "
    "batch normalization, for sin and tanh nonlinearities measured for a 1000 layer deep model at layers $\\ell$ as "
    "a function of gain $\\alpha$. The black trace shows the fitted function $c_1 \\alpha^2$. Traces are averaged "
    "over 10 independent runs, with the shades showing the 95% confidence interval."))
FIGF1_COSTS = Costs(
    quick="≈ 10 s, 2-core CPU", paper="≈ 6 min, 2-core CPU (scaled from depth/fig5)", data="CIFAR-10 (100 images)",
    basis="20 depth-1000 runs (2 activations × 10 gains, 10 seeds, biases) plus 8 runs shared with depth/fig5, from "
          "the measured depth/fig5 sweep (docs/performance.md: 48 runs with biases and torch BN, 2 min 45 s, ≈ 14.6 "
          "ms per layer of depth for 10 seeds); one depth-1000 run probed here at 30 s on a machine shared with "
          "another job, so allow up to ≈ 11 min there.")

register(Figure("depth/figF1", "Explosion rate vs constant gain: a power law", FIGF1_CAPTION, FIGF1_RUNS,
                plot_figF1, claims_figF1, paper_caption=FIGF1_PAPER_CAPTION, costs=FIGF1_COSTS))

# ----------------------------------------------------------------------------------------------- depth/figF2

F2_LAYER = 10
FIGF2_RUNS = {
    "paper": {"runs": RunGrid("depth_rate_exponent")},
    "quick": {"runs": RunGrid("depth_rate_exponent", {**QUICK, "model.depth": 100, "n_seeds": 3},
                              {"model.gain_exponent": [0.1, 0.2, 0.4, 0.6, 1.0]})},
    "smoke": {"runs": RunGrid("depth_rate_exponent", {**QUICK, "model.depth": 40, "n_seeds": 2},
                              {"model.gain_exponent": [0.1, 0.4, 1.0]})},
}


def exponent_rates(df: pd.DataFrame) -> pd.DataFrame:
    rates = explosion_rates(df, [F2_LAYER], by=["act.name", "model.gain_exponent", "model.depth"])
    rates["exponent"] = -rates["model.gain_exponent"]  # the paper's signed exponent: α_ℓ = (ℓ+1)^exponent
    return rates


def plot_figF2(frames, scale):
    rates = exponent_rates(frames["runs"])
    fig, axes = style.new_figure(ncols=2, width=3.4)
    for ax, act in zip(axes, ("sin", "tanh")):
        sub = rates[rates["act.name"] == act]
        style.bands(ax, sub, "exponent", "model.depth", label=lambda depth: f"{int(depth)}", marker=".",
                    linestyle="-")
        ax.set_xlabel("exponent")
        ax.set_ylabel(f"rate at ℓ = {F2_LAYER}")
        ax.set_title(f"{act} ({scale})")
        style.legend(ax, title="Depth")
    return fig


def claims_figF2(frames, scale):
    rates = exponent_rates(frames["runs"])
    claims = []
    for (act, depth), sub in rates.groupby(["act.name", "model.depth"]):
        mean = sub.groupby("exponent")["value"].mean().sort_index()
        tag = f"{act}, L = {int(depth)}"
        claims.append(Claim.above(f"{tag}: smallest increment of the rate with the exponent (tolerance 0.003)",
                                  float(np.diff(mean.to_numpy()).min()), -0.003,
                                  "a more negative exponent lowers the rate"))
        claims.append(Claim.above(f"{tag}: rate(−0.1) / rate(−1.0)", float(mean.iloc[-1] / mean.iloc[0]), 3.0,
                                  "0.053 vs ≈ 0.006"))
        claims.append(Claim.within(f"{tag}: rate at exponent −0.1", float(mean.iloc[-1]), 0.035, 0.075,
                                   "≈ 0.052–0.055"))
    return claims


FIGF2_CAPTION = (
    "Explosion rate at layer ℓ = 10, (ln‖∇W_10‖ − ln‖∇W_20‖)/10, vs the (signed) gain exponent, α_ℓ = "
    "(ℓ+1)^exponent, sin and tanh, for several depths; torch BatchNorm, biases, Haar-orthogonal weights, d = n; "
    "mean and 95% CI over seeds. Decision: \"ℓ = 10\" is read as the window [10, 20], which reproduces the plot "
    "(the window [0, 10] includes the input projection and gives ≈ 0.22). Quick scale: L = 100, five "
    "exponents, 3 seeds.")
FIGF2_PAPER_CAPTION = PaperCaption("Figure F2", (
    "Explosion rate of the log norm of the gradients at initialization for an MLP model with orthogonal weights and "
    "batch normalization, for sin and tanh nonlinearities at depths 100, 200, 500, 1000 as a function of the gain "
    "exponent. Traces are averaged over 10 independent runs, where the shade shows the 95% confidence interval. "
    "Rate is measured at $\\ell = 10$ to avoid the any transient effects of the function"))
FIGF2_COSTS = Costs(
    quick="≈ 5 s, 2-core CPU", paper="≈ 10 min, 2-core CPU (scaled from depth/fig5)", data="CIFAR-10 (100 images)",
    basis="80 runs = 2 activations × 10 gain exponents × depths {100, 200, 500, 1000} (36 000 layers × 10 seeds in "
          "all), from the measured depth/fig5 sweep (docs/performance.md: 48 runs with biases and torch BN, 2 min 45 "
          "s, ≈ 14.6 ms per layer of depth for 10 seeds); about twice that on a busy machine (a depth-1000 run "
          "probed here at 30 s under load).")

register(Figure("depth/figF2", "Explosion rate vs gain exponent", FIGF2_CAPTION, FIGF2_RUNS, plot_figF2,
                claims_figF2, paper_caption=FIGF2_PAPER_CAPTION, costs=FIGF2_COSTS))

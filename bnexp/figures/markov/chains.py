"""markov/fig1 and markov/fig4: residual random-matrix chains of the long version (:mod:`bnexp.chains`).

* fig1 — ln rank_τ(H_ℓ) against depth for the BN residual chain BN(H + γWH) and the vanilla chain (I + γW)H,
  linear, d = N = 32, two γ (configs/exp/markov_rank_tau.yaml): BN keeps the rank, vanilla collapses.
* fig4 — tanh BN chains H ← BN(H + γW tanh(H)): the running ergodic average (1/L) Σ r(H_ℓ) against L for several
  widths (configs/exp/markov_tanh.yaml): Theorem 5's rank ≥ 2, growing with d.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.stats import INF, fmt_gamma, monotone_increments, pick, seed_mean

# ----------------------------------------------------------------------------------------------- markov/fig1

FIG1_RUNS = {
    "paper": {"chains": RunGrid("markov_rank_tau")},
    "quick": {"chains": RunGrid("markov_rank_tau")},
    "smoke": {"chains": RunGrid("markov_rank_tau", {"chain.measure_every": 50, "n_seeds": 4})},
}


def plot_fig1(frames, scale):
    df = frames["chains"]
    gammas = sorted(df["chain.gamma"].unique())
    fig, axes = style.new_figure(ncols=len(gammas), nrows=2)
    for col, gamma in enumerate(gammas):
        for row, (metric, label) in enumerate((("rank_abs", r"$\ln \mathrm{rank}_\tau$ ($\sigma \geq 10^{-9}$)"),
                                                   ("soft_rank", r"$\ln \mathrm{rank}_{1/2}$"))):
            ax = axes[row * len(gammas) + col]
            for norm, name in (("bn_theory", "BN"), ("none", "vanilla")):
                style.band(ax, stats.curve(df, metric, "step", chain__gamma=gamma, chain__norm=norm), "step",
                           kind="norm", name=norm, label=name, marker="", transform=np.log)
            ax.set_xlabel("layer ℓ")
            ax.set_ylabel(label)
            ax.set_title(f"γ = {fmt_gamma(gamma)}, d = N = {int(df['chain.width'].iloc[0])} ({scale})")
            style.legend(ax)
    return fig


def _at(df, metric, step, **eq):
    """Mean over seeds of ``metric`` at the measured layer nearest ``step``."""
    sub = pick(df, metric, **eq)
    nearest = sub.loc[(sub.step - step).abs().idxmin(), "step"]
    return float(sub[sub.step == nearest]["value"].mean())


def claims_fig1(frames, scale):
    df = frames["chains"]
    d = int(df["chain.width"].iloc[0])
    last = int(df["step"].max())
    claims = []
    for gamma in sorted(df["chain.gamma"].unique()):
        g = fmt_gamma(gamma)
        claims.append(Claim.at_most(f"γ={g}: vanilla rank_1/2 at ℓ = 500", _at(df, "soft_rank", 500, chain__gamma=gamma,
                                    chain__norm="none"), 1.5, "vanilla rank collapses to 1 with depth"))
        claims.append(Claim.at_least(f"γ={g}: BN rank_1/2 at ℓ = 500, over √d",
                                     _at(df, "soft_rank", 500, chain__gamma=gamma, chain__norm="bn_theory")
                                     / math.sqrt(d), 1.0, "BN stabilises the rank (Ω(√d))"))
        if last >= 3000:  # rank_τ with the 1e-9 rule collapses only through float64 resolution: slowly
            claims.append(Claim.at_most(f"γ={g}: vanilla rank_τ at ℓ = {last}",
                                        _at(df, "rank_abs", last, chain__gamma=gamma, chain__norm="none"), 2,
                                        "ln rank_τ of vanilla nets → 0"))
            claims.append(Claim.at_least(f"γ={g}: BN rank_τ at ℓ = {last}",
                                         _at(df, "rank_abs", last, chain__gamma=gamma, chain__norm="bn_theory"), 8,
                                         "BN keeps a high rank"))
    return claims


FIG1_CAPTION = (
    "ln rank_τ(H_ℓ) of the BN residual chain BN(H + γ W H) (theory BN) and of the vanilla chain "
    "(I + γW)H rescaled to ‖H‖_F² = dN, linear, d = N = 32, W ~ U[-√3, √3], Gaussian full-rank "
    "input, mean and 95% CI over 10 seeds. Decisions: the two γ values are not stated in the paper (γ = 0.1 "
    "and 1); N = d; depth 3000, measured every 10 layers. rank_τ follows the caption (Frobenius-normalise, "
    "count singular values ≥ 1e-9, top row); it falls only as float64 loses resolution, so rank_1/2 "
    "(Tr M = d normalisation) is shown below it and carries the depth-500 claims.")
FIG1_PAPER_CAPTION = PaperCaption("Figure 1", (
    "Rank comparison in forward pass: The vertical axis shows logarithm of the rank of batch-normalized "
    "($\\ln(\\operatorname{rank}_{\\tau}(H_{\\ell}))$, blue lines) and vanilla networks "
    "($\\ln(\\operatorname{rank}_{\\tau}(\\widetilde{H}_{\\ell}))$, orange lines) of width 32 (d) and increasing "
    "depth (ℓ) for two values of γ. For numerical approximation of the rank, we normalize each matrix and zero-out "
    "singular values with absolute values less than 10^{-9}. We draw weights $\\{W_{\\ell}\\}_{\\ell=1}^{L}$ i.i.d. "
    "from a symmetric uniform distribution with variance one $(U[-\\sqrt{3},\\sqrt{3}])$ and input a full rank "
    "matrix with Gaussian data."))
FIG1_COSTS = Costs(
    quick="≈ 5 s, 2-core CPU", paper="≈ 10 s, 2-core CPU (measured)", data="none",
    basis="Measured here: `bnexp sweep +exp=markov_rank_tau` at paper scale (4 runs, 10 seeds, d = N = 32, 3000 "
          "layers) took 4.4 s wall; plotting adds a few seconds.")

register(Figure("markov/fig1", "ln rank_τ vs depth, BN vs vanilla, two γ", FIG1_CAPTION, FIG1_RUNS, plot_fig1,
                claims_fig1, paper_caption=FIG1_PAPER_CAPTION, costs=FIG1_COSTS))

# ----------------------------------------------------------------------------------------------- markov/fig4

FIG4_RUNS = {
    "paper": {"chains": RunGrid("markov_tanh")},
    "quick": {"chains": RunGrid("markov_tanh", {"chain.depth": 2048, "n_seeds": 3},
                                {"chain.width": [8, 16, 32, 64, 128], "chain.gamma": [0.1, INF]})},
    "smoke": {"chains": RunGrid("markov_tanh", {"chain.depth": 512, "n_seeds": 2},
                                {"chain.width": [8, 16, 32], "chain.gamma": [0.1, INF]})},
}


def running_mean(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """(1/L) Σ_{ℓ=1}^{L} r(H_ℓ) for every measured L, per run and seed: the mean over the measured layers
    1 ≤ ℓ ≤ L (every layer at the configured measure_every = 1)."""
    sub = pick(df, "rank_lower_bound")
    sub = sub[sub.step >= 1].sort_values([*by, "seed", "step"]).copy()
    groups = sub.groupby([*by, "seed"])["value"]
    sub["value"] = groups.cumsum() / (groups.cumcount() + 1)
    return sub


def plot_fig4(frames, scale):
    run = running_mean(frames["chains"], ["chain.width", "chain.gamma"])
    gammas = sorted(run["chain.gamma"].unique())
    fig, axes = style.new_figure(ncols=len(gammas))
    for ax, gamma in zip(axes, gammas):
        for i, width in enumerate(sorted(run["chain.width"].unique())):
            sub = pick(run, chain__gamma=gamma, chain__width=width)
            sub = sub[np.isin(sub.step, 2 ** np.arange(0, 21))]  # powers of two, as on a log2 axis
            s = stats.summarize(sub, "step")
            s["step"] = np.log2(s["step"].astype(float))
            style.band(ax, s, "step", **style.series(i, f"d = {int(width)}"), transform=np.log2)
        ax.set_xlabel(r"$\log_2 L$ (number of layers)")
        ax.set_ylabel(r"$\log_2 \frac{1}{L} \sum_{\ell \leq L} r(H_\ell)$")
        ax.set_title(f"tanh BN chain, γ = {fmt_gamma(gamma)} ({scale})")
        style.legend(ax)
    return fig


def plateaus(df: pd.DataFrame) -> pd.Series:
    """Seed-mean of the running average of r at the deepest layer, per (γ, d)."""
    run = running_mean(df, ["chain.width", "chain.gamma"])
    last = run[run.step == run.step.max()]
    return seed_mean(last, ["chain.gamma", "chain.width"]).set_index(["chain.gamma", "chain.width"])["value"]


def claims_fig4(frames, scale):
    plateau = plateaus(frames["chains"])
    claims = []
    for gamma in sorted(plateau.index.get_level_values(0).unique()):
        curve = plateau.loc[gamma]
        g = fmt_gamma(gamma)
        claims.append(Claim.at_least(f"γ={g}: slope of log plateau vs log d",
                                     stats.loglog_slope(curve.index.to_numpy(float), curve.to_numpy()), 0.5,
                                     "improvable toward O(√d) as for linear nets"))
        claims.append(Claim.at_least(f"γ={g}: smallest plateau over d", float(curve.min()), 2.0,
                                     "rank ≥ 2 (Theorem 5)"))
        claims.append(Claim.above(f"γ={g}: plateau increases with d (smallest increment)",
                                  monotone_increments(curve.to_numpy()), 0.0, "grows with d"))
    return claims


FIG4_CAPTION = (
    "Running ergodic average (1/L) Σ_{ℓ≤L} r(H_ℓ) of the rank lower bound r = Tr(M)²/‖M‖_F² for tanh BN "
    "chains H ← BN(H + γ W tanh(H)) (theory BN), W ~ U[-√3, √3], N = d, Gaussian input; log2-log2; mean and "
    "95% CI over seeds. Decisions: curves and γ are not stated in the paper: widths 8–128 and γ ∈ {0.1, ∞}; "
    "N = d; 4096 layers, 5 seeds at paper scale (quick: 2048 layers, 3 seeds).")
FIG4_PAPER_CAPTION = PaperCaption("Figure 4", (
    "Experimental validation for F = tanh. Horizontal axis is the logrithm of the number of hidden layers, i.e. "
    "$\\log_2(L)$. We plot $\\log_2\\left(\\frac{1}{L}\\sum_{\\ell=1}^L r(H_\\ell^{(\\gamma)})\\right)$. The "
    "results suggests that the statement of Theorem 5 is valid but can be improved to match the "
    "$\\mathcal{O}(\\sqrt{d})$ result for linear nets"))
FIG4_COSTS = Costs(
    quick="≈ 10 s, 2-core CPU", paper="≈ 30 s, 2-core CPU (measured)", data="none",
    basis="Measured here: `bnexp sweep +exp=markov_tanh` at paper scale (10 runs, 5 seeds, d = 8…128, 4096 layers) "
          "took 22 s wall; plotting adds a few seconds.")

register(Figure("markov/fig4", "tanh BN chains: running average of r vs depth, several widths", FIG4_CAPTION,
                FIG4_RUNS, plot_fig4, claims_fig4, paper_caption=FIG4_PAPER_CAPTION, costs=FIG4_COSTS))

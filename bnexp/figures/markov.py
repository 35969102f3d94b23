"""Init-time figures of "Theoretical understanding of batch-normalization: a Markov chain perspective"
(the long arXiv version of the rank-collapse paper): markov/fig1, fig4, table1, and the figures it shares
with the NeurIPS version (markov/fig2, fig3, fig9, fig10 = rank/fig3a, fig3b, fig8, fig9).

Each figure's caption states its setup and every decision where the paper is silent.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnexp.figures import Claim, Figure, RunGrid, rank, register, stats, style
from bnexp.figures.stats import (
    INF,
    fmt_gamma,
    layer_average,
    monotone_increments,
    pick,
    seed_mean,
)

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
        for row, (metric, label) in enumerate((("rank_abs", "ln rank_τ (σ ≥ 1e-9)"), ("soft_rank", "ln rank_1/2"))):
            ax = axes[row * len(gammas) + col]
            for norm, color, name in (("bn_theory", rank.BLUE, "BN"), ("none", rank.ORANGE, "vanilla")):
                sub = pick(df, metric, chain__gamma=gamma, chain__norm=norm)
                style.band(ax, stats.summarize(sub, "step"), "step", label=name, color=color, marker="",
                              transform=np.log)
            ax.set_xlabel("layer ℓ")
            ax.set_ylabel(label)
            ax.set_title(f"γ = {fmt_gamma(gamma)}, d = N = {int(df['chain.width'].iloc[0])} ({scale})")
            ax.legend()
    return fig


def _at(df, metric, step, **eq):
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
    "ln rank_τ(H_ℓ) of the BN residual chain BN(H + γ W H) (theory BN, blue) and of the vanilla chain "
    "(I + γW)H rescaled to ‖H‖_F² = dN (orange), linear, d = N = 32, W ~ U[-√3, √3], Gaussian full-rank "
    "input, mean and 95% CI over 10 seeds. Decisions: the two γ values are not stated in the paper (γ = 0.1 "
    "and 1); N = d; depth 3000, measured every 10 layers. rank_τ follows the caption (Frobenius-normalise, "
    "count singular values ≥ 1e-9, top row); it falls only as float64 loses resolution, so rank_1/2 "
    "(Tr M = d normalisation) is shown below it and carries the depth-500 claims.")
register(Figure("markov/fig1", "ln rank_τ vs depth, BN vs vanilla, two γ", FIG1_CAPTION, FIG1_RUNS, plot_fig1,
                claims_fig1))

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
    df = frames["chains"]
    run = running_mean(df, ["chain.width", "chain.gamma"])
    gammas = sorted(run["chain.gamma"].unique())
    fig, axes = style.new_figure(ncols=len(gammas))
    for ax, gamma in zip(axes, gammas):
        for width in sorted(run["chain.width"].unique()):
            sub = run[(run["chain.gamma"] == gamma) & (run["chain.width"] == width)]
            sub = sub[np.isin(sub.step, 2 ** np.arange(0, 21))]  # powers of two, as on a log2 axis
            s = stats.summarize(sub, "step")
            s["step"] = np.log2(s["step"].astype(float))
            style.band(ax, s, "step", label=f"d = {int(width)}", transform=np.log2)
        ax.set_xlabel("log2 L (number of layers)")
        ax.set_ylabel("log2 (1/L) Σ r(H_ℓ)")
        ax.set_title(f"tanh BN chain, γ = {fmt_gamma(gamma)} ({scale})")
        ax.legend()
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
register(Figure("markov/fig4", "tanh BN chains: running average of r vs depth, several widths", FIG4_CAPTION,
                FIG4_RUNS, plot_fig4, claims_fig4))

# ----------------------------------------------------------------------------------------------- markov/table1

TABLE1_RUNS = {
    "paper": {"chains": RunGrid("markov_table")},
    "quick": {"chains": RunGrid("markov_table", {}, {"chain.width": [8, 16, 32, 64]})},
    "smoke": {"chains": RunGrid("markov_table", {"chain.depth": 500, "chain.burn_in": 100, "n_seeds": 2},
                                {"chain.width": [8, 16, 32]})},
}
# The vanilla tanh chain again at unit-variance scale (‖H‖_F² = dN): an extra row, not one of the paper's cells.
for _scale, _grids in TABLE1_RUNS.items():
    _base = _grids["chains"]
    _grids["unit_scale"] = RunGrid("markov_table", {**_base.overrides, "chain.norm": "none", "chain.act": "tanh",
                                                    "chain.renorm_to": "dN"}, _base.grid)
THEORY = {  # the paper's Table 1 theory cells (statements, quoted)
    ("none", "linear"): "rank_τ(Ĥ_∞) = 1 (Lem 4)", ("none", "tanh"): "—",
    ("bn_theory", "linear"): "rank_τ(H_ℓ) ≥ Ω(√d) (Thm 3)", ("bn_theory", "tanh"): "rank(H_ℓ) ≥ 2 (Thm 5)",
}
PAPER_EXPERIMENT = {
    ("none", "linear"): "rank_τ(Ĥ_ℓ≥k) = 1", ("none", "tanh"): "rank_τ(Ĥ_ℓ≥k) = 1",
    ("bn_theory", "linear"): "rank_τ(H_ℓ) ≥ Ω(√d)", ("bn_theory", "tanh"): "rank_τ(H_ℓ≥k) ≥ Ω(d)",
}


def table1(frames, scale) -> pd.DataFrame:
    """Measured rank_1/2 (mean over layers after burn-in and seeds) per (norm, act, γ) and d, plus slopes."""
    keys = ["chain.norm", "chain.act", "chain.gamma", "chain.renorm_to", "chain.width"]
    df = pd.concat([frames["chains"], frames["unit_scale"]], ignore_index=True)
    means = seed_mean(layer_average(df, "soft_rank", keys), keys)
    rows = []
    for (norm, act, gamma, renorm), sub in means.groupby(keys[:-1]):
        sub = sub.sort_values("chain.width")
        slope = stats.loglog_slope(sub["chain.width"].to_numpy(float), sub["value"].to_numpy())
        extra = norm == "none" and renorm == "dN"
        row = {"network": "BN" if norm == "bn_theory" else ("no BN, unit scale" if extra else "no BN"),
               "activation": act, "γ": fmt_gamma(gamma),
               "theory (paper)": "(extra row)" if extra else THEORY[(norm, act)],
               "experiments (paper)": "(extra row)" if extra else PAPER_EXPERIMENT[(norm, act)]}
        row.update({f"d={int(w)}": round(v, 2) for w, v in zip(sub["chain.width"], sub["value"])})
        row["slope vs log d"] = round(slope, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_table1(frames, scale):
    table = table1(frames, scale)
    fig, axes = style.new_figure(width=9, height=0.28 * (len(table) + 2))
    ax = axes[0]
    ax.axis("off")
    ax.grid(False)
    cells = ax.table(cellText=table.astype(str).to_numpy(), colLabels=list(table.columns), loc="center",
                     cellLoc="center")
    cells.auto_set_font_size(False)
    cells.set_fontsize(6)
    cells.auto_set_column_width(list(range(len(table.columns))))
    ax.set_title(f"markov/table1: measured rank_1/2 averaged over layers ({scale})")
    return fig


def claims_table1(frames, scale):
    table = table1(frames, scale)
    d_cols = [c for c in table.columns if c.startswith("d=")]
    claims = []
    vanilla = table[table.network == "no BN"]  # the paper's cells; the unit-scale row is reported, not claimed
    claims.append(Claim.at_most("no BN: largest average rank_1/2 (linear and tanh)",
                                float(vanilla[d_cols].to_numpy(float).max()), 2.0, "rank_τ(Ĥ_ℓ≥k) = 1"))
    for gamma in table["γ"].unique():
        bn = table[(table.network == "BN") & (table["γ"] == gamma)].set_index("activation")["slope vs log d"]
        claims.append(Claim.within(f"BN linear, γ={gamma}: slope of rank_1/2 vs d", float(bn["linear"]), 0.45, 0.8,
                                   "Ω(√d)"))
        claims.append(Claim.at_least(f"BN tanh, γ={gamma}: slope of rank_1/2 vs d", float(bn["tanh"]), 0.7,
                                     "Ω(d)"))
        claims.append(Claim.above(f"BN, γ={gamma}: tanh slope minus linear slope", float(bn["tanh"] - bn["linear"]),
                                  0.0, "tanh Ω(d) vs linear Ω(√d)"))
    return claims


TABLE1_CAPTION = (
    "The experimental cells of Table 1 regenerated from our runs: rank_1/2 (Tr M = d normalisation) averaged "
    "over layers after burn-in and over seeds, per width, with the fitted log-log slope; the theory cells are "
    "the paper's statements, quoted. Chains: BN (theory BN, H ← BN(W F(H)) for γ = ∞ and BN(H + γ W F(H)) for "
    "γ = 0.1) and vanilla (the same without BN), W ~ U[-√3, √3], N = d, Gaussian input, 2000 layers, burn-in "
    "200, every 10th layer, 3 seeds (quick: d ≤ 64). Decision: the paper does not "
    "say how the vanilla chain is scaled; it is rescaled to ‖H‖_F = √d every layer (entries of variance 1/N). "
    "At that scale tanh acts almost linearly and the vanilla tanh chain collapses like the linear one, as the "
    "paper reports. The extra row 'no BN, unit scale' rescales to ‖H‖_F² = dN (unit-variance entries) "
    "instead: there tanh is far from linear and the vanilla chain does not collapse to rank 1, so the "
    "paper's vanilla-tanh cell depends on this unstated scale.")
register(Figure("markov/table1", "Rank summary table: theory vs measured, linear/tanh, BN/vanilla",
                TABLE1_CAPTION, TABLE1_RUNS, plot_table1, claims_table1, table=table1))

# ----------------------------------------------------------------------------------------------- aliases


_a = style.single_panel(rank.panel_fig3a, rank.claims_fig3a, "a", "rank_1/2 vs width")
_b = style.single_panel(rank.panel_fig3b, rank.claims_fig3b, "b", "top-10 eigenvalues of M_ℓ")
register(
    Figure("markov/fig2", "Theorem 3 validation: rank_1/2 vs width (its panel a)", rank.FIG3A_CAPTION,
           {s: {"a": g} for s, g in rank.FIG3A_RUNS.items()}, *_a, alias_of="rank/fig3"),
    Figure("markov/fig3", "Top-10 eigenvalues of M_ℓ, nearly collinear input (its panel b)", rank.FIG3B_CAPTION,
           {s: {"b": g} for s, g in rank.FIG3B_RUNS.items()}, *_b, alias_of="rank/fig3"),
    Figure("markov/fig9", "Regularity constant vs width", rank.REG_CAPTION, rank.REG_RUNS, rank.plot_fig8,
           rank.check_fig8, alias_of="rank/fig8"),
    Figure("markov/fig10", "E‖M‖_F² vs width", rank.REG_CAPTION, rank.REG_RUNS, rank.plot_fig9, rank.check_fig9,
           alias_of="rank/fig9"),
)

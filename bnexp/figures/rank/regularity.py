"""rank/fig8 and rank/fig9 (appendix): the invariant distribution of the BN linear chain without skip connections.

* fig8 — the regularity constant α = E Tr(diag(M²)²) / E Tr(M³) (Eq. 49) against the width d: below 0.9
  for d > 10 and decreasing, the assumption of Theorem 2.
* fig9 — the ergodic average of ‖M(H_ℓ)‖_F² against d, under Lemma 13's bound d^1.5/√(1−α).

Both read the same runs (configs/exp/rank_regularity.yaml: H ← BN(WH), theory BN, N = d, W ~ N(0, 1),
L = 10^5); markov/fig9 and fig10 show the same figures.
"""

from __future__ import annotations

import numpy as np

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.stats import layer_average, monotone_increments, ratio_of_averages

REG_RUNS = {
    "paper": {"chains": RunGrid("rank_regularity")},
    "quick": {"chains": RunGrid("rank_regularity", {"chain.depth": 20000, "chain.burn_in": 1000, "n_seeds": 3},
                                {"chain.width": [8, 16, 32, 64, 128]})},
    "smoke": {"chains": RunGrid("rank_regularity", {"chain.depth": 2000, "chain.burn_in": 200, "n_seeds": 2},
                                {"chain.width": [8, 16, 32]})},
}


def alpha_table(df):
    """α per width and seed: E Tr(diag(M²)²) / E Tr(M³) as a ratio of ergodic averages (Eq. 49)."""
    return ratio_of_averages(df, "regularity_num", "regularity_den", ["chain.width"])


def fro_table(df):
    """(1/L) Σ_ℓ ‖M(H_ℓ)‖_F² per width and seed, over the layers after the burn-in."""
    return layer_average(df, "second_moment_fro2", ["chain.width"])


def panel_fig8(ax, df):
    s = stats.summarize(alpha_table(df), "chain.width")
    style.band(ax, s, "chain.width", **style.series(0, "estimated α"))
    widths = s["chain.width"].to_numpy(dtype=float)
    style.reference(ax, [widths.min(), widths.max()], [0.9, 0.9], "0.9", linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("d")
    ax.set_ylabel("regularity constant α")
    style.legend(ax)


def claims_fig8(df, scale):
    alpha = alpha_table(df).groupby("chain.width")["value"].mean()
    return [
        Claim.at_most("α for every d > 10 (largest)", float(alpha[alpha.index > 10].max()), 0.9, "α < 0.9 for d > 10"),
        Claim.below("α decreases with d (largest consecutive change)", -monotone_increments(-alpha.to_numpy()),
                    0.0, "decreasing in d"),
    ]


def panel_fig9(ax, df):
    s = stats.summarize(fro_table(df), "chain.width")
    s["chain.width"] = np.log2(s["chain.width"].astype(float))
    style.band(ax, s, "chain.width", **style.series(0, r"$\log_2 \mathbb{E}\|M\|_F^2$"), transform=np.log2)
    xs = s["chain.width"].to_numpy()
    style.reference(ax, xs, 1.5 * xs, r"$\log_2 d^{1.5}$")
    ax.set_xlabel(r"$\log_2 d$")
    ax.set_ylabel(r"$\log_2 \frac{1}{L} \sum_\ell \|M(H_\ell)\|_F^2$")
    style.legend(ax)


def claims_fig9(df, scale):
    fro = fro_table(df).groupby("chain.width")["value"].mean()
    alpha = alpha_table(df).groupby("chain.width")["value"].mean()
    widths = fro.index.to_numpy(dtype=float)
    bound = widths ** 1.5 / np.sqrt(1 - alpha.reindex(fro.index).to_numpy())
    return [
        Claim.within("slope of log2 E‖M‖_F² vs log2 d", stats.loglog_slope(widths, fro.to_numpy()), 1.3, 1.6,
                     "d^1.5 (Lemma 13)"),
        Claim.at_most("E‖M‖_F² / (d^1.5/√(1−α)) (largest over d)", float((fro.to_numpy() / bound).max()), 1.0,
                      "E‖M‖_F² ≤ d^1.5/√(1−α) (Lemma 13)"),
    ]


REG_CAPTION = (
    "BN linear chain without skip connections (γ = ∞: the paper does not state γ), theory BN, N = d, "
    "W ~ N(0, 1), start M_0 = I. Ergodic averages over every 10th layer after a burn-in of 1000 of L = 10^5 "
    "layers (paper scale, one chain per d as in the paper); quick scale L = 20 000, d ≤ 128, 3 seeds (95% CI "
    "over seeds).")
FIG8_CAPTION = "α = E Tr(diag(M²)²) / E Tr(M³) estimated as a ratio of ergodic averages (Eq. 49). " + REG_CAPTION
FIG9_CAPTION = "Ergodic average of ‖M(H_ℓ)‖_F² vs d, log2-log2, with log2 d^1.5. " + REG_CAPTION
plot_fig8, check_fig8 = style.single_panel(panel_fig8, claims_fig8, "chains", "regularity constant vs width")
plot_fig9, check_fig9 = style.single_panel(panel_fig9, claims_fig9, "chains", r"$\mathbb{E}\|M\|_F^2$ vs width")
FIG8_PAPER_CAPTION = PaperCaption("Figure 8", (
    "Regularity constant of the invariant distribution. The vertical axis is the estimated regularity constant α "
    "and the horizontal axis is d. We use L = 10^5 (in Eq. (49))."))
FIG8_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 3 min, 2-core CPU (1/10-depth probe ×10)", data="none",
    basis="Probed here: the 6-width sweep (d = 8…256, 1 chain each) at 10^4 of its 10^5 layers took 20 s with "
          "runtime.threads=1 (d = 256: 12 s), ×10; with the default threads=auto and another job on the machine the "
          "float64 d = 256 chain ran ~10× slower (58 s per 10^4 layers), so pass runtime.threads=1 on a shared "
          "machine.")

FIG9_PAPER_CAPTION = PaperCaption("Figure 9", (
    "Dependency of E_{ν_γ}‖M(H)‖_F^2 on d. The horizontal axis is log2(d) and the vertical axis shows log2((1/L) "
    "∑_{ℓ=1}^{L} ‖M(H_ℓ^(γ))‖_F^2) for L = 10^5. The green dashed-line plots log2(d^1.5)."))
FIG9_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 3 min, 2-core CPU (= rank/fig8's runs)", data="none",
    basis="Exactly the same 6 rank_regularity runs as rank/fig8 (free once fig8 is done); probed here at 1/10 of the "
          "depth: 20 s ×10 with runtime.threads=1.")

register(
    Figure("rank/fig8", "Regularity constant α of the invariant distribution vs width", FIG8_CAPTION, REG_RUNS,
           plot_fig8, check_fig8, paper_caption=FIG8_PAPER_CAPTION, costs=FIG8_COSTS),
    Figure("rank/fig9", "E‖M‖_F² vs width with the d^1.5 line (Lemma 13)", FIG9_CAPTION, REG_RUNS, plot_fig9,
           check_fig9, paper_caption=FIG9_PAPER_CAPTION, costs=FIG9_COSTS),
)

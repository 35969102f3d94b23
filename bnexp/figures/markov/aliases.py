"""The long version's figures that the NeurIPS version already shows: the same runs, plots and claims as the rank
figure each aliases (``alias_of``), registered under the long version's numbers.

markov/fig2 = rank/fig3 (a), fig3 = rank/fig3 (b), fig5 = rank/fig1, fig9 = rank/fig8, fig10 = rank/fig9.
"""

from __future__ import annotations

from bnexp.figures import Figure, register, style
from bnexp.figures.rank import chains, depth, regularity

_a = style.single_panel(chains.panel_fig3a, chains.claims_fig3a, "a", "rank_1/2 vs width")
_b = style.single_panel(chains.panel_fig3b, chains.claims_fig3b, "b", "top-10 eigenvalues of M_ℓ")
register(
    Figure("markov/fig2", "Theorem 3 validation: rank_1/2 vs width (its panel a)", chains.FIG3A_CAPTION,
           {s: {"a": g} for s, g in chains.FIG3A_RUNS.items()}, *_a, alias_of="rank/fig3"),
    Figure("markov/fig3", "Top-10 eigenvalues of M_ℓ, nearly collinear input (its panel b)", chains.FIG3B_CAPTION,
           {s: {"b": g} for s, g in chains.FIG3B_RUNS.items()}, *_b, alias_of="rank/fig3"),
    Figure("markov/fig5", "Effect of depth on learning, Fashion-MNIST (rank/fig1)", depth.FIG1_CAPTION + " The long "
           "version ran 15 000 iterations at batch 32; this figure shows rank/fig1's runs.", depth.FIG1_RUNS,
           depth.plot_fig1, depth.claims_fig1, kind="train", alias_of="rank/fig1"),
    Figure("markov/fig9", "Regularity constant vs width", regularity.REG_CAPTION, regularity.REG_RUNS,
           regularity.plot_fig8, regularity.check_fig8, alias_of="rank/fig8"),
    Figure("markov/fig10", "E‖M‖_F² vs width", regularity.REG_CAPTION, regularity.REG_RUNS, regularity.plot_fig9,
           regularity.check_fig9, alias_of="rank/fig9"),
)

"""Figures of "Theoretical understanding of batch-normalization: a Markov chain perspective" (Daneshmand,
Kohler, Bach, Hofmann, Lucchi; the long arXiv version of the rank-collapse paper, :mod:`bnexp.figures.rank`):

* :mod:`.chains` — fig1 (ln rank_τ vs depth, BN against vanilla residual chains), fig4 (tanh BN chains).
* :mod:`.table` — table1: the theory and the measured cells of the rank summary table.
* :mod:`.aliases` — fig2, 3, 5–11: the experiments the NeurIPS version already shows, registered under the long
  version's numbers with the rank figures' runs, plots and claims.
"""

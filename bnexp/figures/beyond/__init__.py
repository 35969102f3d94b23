"""Figures beyond the papers: the papers' measurements asked of what the papers do not cover.

Families: :mod:`.norms` (beyond/norms-rank, beyond/norms-ortho: rank and orthogonality gap of every layer of a deep
random MLP for BN against the per-sample LayerNorm, RMSNorm and GroupNorm), :mod:`.gradients`
(beyond/norms-gradients: ln‖∇W_1‖ against depth for the same norms), :mod:`.attention` (beyond/attention-rank: rank
collapse of self-attention stacks, Dong, Cordonnier, Loukas 2021). Each is registered and checked like a paper's
figure; its claims compare numbers from our runs with the statement it tests (the paper's for BN, ours — measured —
for what the papers do not cover).
"""

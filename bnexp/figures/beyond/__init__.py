"""Figures beyond the papers: the papers' measurements asked of what the papers do not cover.

Families: :mod:`.norms` (beyond/norms-rank, beyond/norms-ortho: the rank/fig2 and ortho/fig2a random chains with BN
against the per-sample LayerNorm, RMSNorm and GroupNorm), :mod:`.gradients` (beyond/norms-gradients: depth/fig3's
ln‖∇W_1‖ against depth for the same norms and weight normalisation), :mod:`.attention` (beyond/attention-rank: rank
collapse of self-attention stacks, Dong, Cordonnier, Loukas 2021). Each is registered and checked like a paper's
figure; its claims compare numbers from our runs with the statement it tests (the paper's, for BN; for what the papers
do not cover, the behaviour measured here, stated with its number in the caption).
"""

from bnexp.figures.figure import PaperCaption


def setup_caption(caption: PaperCaption, paper: str) -> PaperCaption:
    """The caption of the paper's figure whose setup a beyond figure asks of other norms, quoted as the paper prints
    it and labelled as borrowed (the report shows it next to our plot)."""
    return PaperCaption(f"{caption.label} of the {paper} paper (the setup asked of other norms)", caption.text)


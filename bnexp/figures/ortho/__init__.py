"""Figures of "Batch Normalization Orthogonalizes Representations in Deep Random Networks" (Daneshmand, Joudaki,
Bach; NeurIPS 2021): at initialisation, and training (§5, App. G).

Families: :mod:`.chains` (fig1, |cos| of two samples, BN vs vanilla), :mod:`.gap` (fig2 a/b, the orthogonality
gap against depth and width, and table1 with its measured Wasserstein row), :mod:`.conjecture` (fig6, the
conjecture of Appendix F), :mod:`.networks` (fig5, the gap per layer of ReLU MLPs and ConvNets on image batches),
:mod:`.training` (fig3, fig4: training vanilla MLPs — the initial gap and the loss against depth, Xavier against the
iterative orthogonalization init), :mod:`.convnets` (fig7: the same comparison on convnets of 20 and 80 convs).

The chain figures run in :mod:`bnexp.chains` with the paper's BN (each feature row divided by its norm over the
batch: ``chain.bn_scale=unit_norm``, no centring, no eps in effect), inputs that are not normalised
(``chain.norm_input=false``) and n = 2 or 4 samples; their experiment YAMLs are the paper's setup and cheap, so
quick and smoke scales mostly change seeds, widths and depths. Each caption states every decision where the
paper is ambiguous.
"""

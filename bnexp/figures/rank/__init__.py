"""Figures of "Batch Normalization Provably Avoids Rank Collapse for Randomly Initialised Deep Networks"
(Daneshmand, Kohler, Bach, Hofmann, Lucchi; NeurIPS 2020), one module per family:

* :mod:`.chains` — fig2: rank vs depth of random-matrix chains (:mod:`bnexp.chains`).
* :mod:`.spectrum` — fig3: the BN residual chain's rank_1/2 vs width, and the spectrum of a nearly collinear input.
* :mod:`.regularity` — fig8, fig9: the regularity constant α and E‖M‖_F² of the invariant distribution.
* :mod:`.depth` — fig1: rank at initialisation and trainability vs depth (Fashion-MNIST MLPs).
* :mod:`.pretrain` — fig4, fig11, fig12: rank pre-training of vanilla MLPs against BN.
* :mod:`.layerwise` — fig6: layer-wise pre-training and the asymmetric init on a deep MLP.
* :mod:`.breaking` — fig5, fig7, fig13: breaking BN (asymmetric init, no centring) on VGG19 and ResNet-50.
* :mod:`.alignment` — fig10: directional gradient vanishing.

The long version's numbers for the same experiments are registered in :mod:`bnexp.figures.markov.aliases`.
Here: the data stand-ins that several training families use at quick and smoke scale.
"""

# Synthetic class-prototype images (quick/smoke of the CIFAR figures, smoke of the Fashion-MNIST ones).
GREY_PROTO = {"data": "prototypes", "data.shape": [1, 14, 14]}
COLOUR_PROTO = {"data": "prototypes", "data.shape": [3, 16, 16]}
# Real Fashion-MNIST, subsampled (quick of fig1, fig6, fig12).
FMNIST_SUB = {"data": "fashion_mnist", "data.normalize": "none"}

"""Weight normalization (Salimans & Kingma 2016): every weight layer's ``W = g · V/‖V‖`` row by row.

Config ``norm=weightnorm``. The normalisation lives in the weights, not in a layer: the norm slot of the model is
:class:`WeightNorm`, the identity, and :func:`weight_normalize` reparametrizes the weight of every layer of
``model.weight_layers()`` — every hidden weight layer (input projection, stem and shortcut projections included)
and the readout alike — through ``torch.nn.utils.parametrize``::

    W_i = g_i · V_i / ‖V_i‖₂        row i (dim 0: an output unit; for a conv kernel its (in, k_h, k_w) block)

The trained parameters are ``g`` (shape (out,)) and ``V`` (the shape of W): ``module.parametrizations.weight
.original0`` and ``.original1``; autograd gives ∂L/∂g_i = ⟨∂L/∂W_i, V̂_i⟩ and
∂L/∂V_i = g_i/‖V_i‖ · (∂L/∂W_i − ⟨∂L/∂W_i, V̂_i⟩ V̂_i), V̂_i = V_i/‖V_i‖. ``module.weight`` is W, recomputed from
(g, V) at every access.

Order: the engine calls :func:`weight_normalize` after ``init_weights`` has drawn W (``bnexp.engines.train``:
``_initialise``), so the direction V = W keeps the init scheme's law (e.g. ``init=orthogonal``) and g = ‖W_i‖ the
row norms: the network's function at initialisation is exactly the one without weight normalization (g/‖V‖ is
x/x = 1 in floating point). A model built with ``norm="weightnorm"`` but not passed through
:func:`weight_normalize` is the plain network.

What the probes read: weight metrics see W (``module.weight``, the effective matrix); ``grad_norm`` of layer k is
‖∂L/∂V_k‖_F, the gradient of the trained tensor of W's shape (:func:`trained_weight`; ∂L/∂g is left out, as BN's
γ is). g is one-dimensional, so ``optim.wd_on=weights_only`` decays V and not g (a scale, as γ).

Where it does not apply (the engine says so): the vmapped init-time probe stacks plain weights, so a
weight-normalised run is measured seed by seed (``runtime.batch_seeds=true`` is refused); pre-training that writes
W itself (``pretrain=layerwise``, ``svd_orth``) is refused (``end_to_end`` trains g and V); stacked SGD
(``bnexp.engines.train_group``) takes ``bn_torch`` and ``none`` only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["WeightNorm", "WeightNormalization", "is_weight_normalized", "trained_weight", "weight_normalize"]


def _row_norms(v: Tensor) -> Tensor:
    """‖V_i‖₂ of each row i (dim 0) over every other dim: shape (out,)."""
    return torch.linalg.vector_norm(v.flatten(1), dim=1)


class WeightNormalization(nn.Module):
    """The parametrization ``(g, V) ↦ W = g · V/‖V‖`` row-wise; ``right_inverse(W) = (‖W_i‖, W)``, so registering it
    on a weight W leaves W unchanged."""

    def forward(self, g: Tensor, v: Tensor) -> Tensor:
        return v * (g / _row_norms(v)).view(-1, *([1] * (v.dim() - 1)))

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        return _row_norms(w), w


def is_weight_normalized(module: nn.Module) -> bool:
    """Whether ``module.weight`` is reparametrized by :class:`WeightNormalization`."""
    return parametrize.is_parametrized(module, "weight") and any(
        isinstance(p, WeightNormalization) for p in module.parametrizations.weight)


def weight_normalize(model: nn.Module) -> nn.Module:
    """Reparametrize every layer of ``model.weight_layers()`` as ``W = g · V/‖V‖`` (module docstring), in place,
    with g = ‖W_i‖ and V = W: the function is unchanged. Call it once, after the weights are initialised.
    Returns ``model``."""
    for module in model.weight_layers():
        if is_weight_normalized(module):
            raise ValueError(f"{type(module).__name__} is already weight-normalised")
        parametrize.register_parametrization(module, "weight", WeightNormalization())
    return model


def trained_weight(module: nn.Module) -> Tensor:
    """The trained tensor of ``module``'s weight shape: ``module.weight``, or V when it is weight-normalised (W is
    then recomputed at each access and is not in the graph of an earlier forward pass)."""
    if is_weight_normalized(module):
        return module.parametrizations.weight.original1
    return module.weight


class WeightNorm(nn.Identity):
    """The norm slot of ``weightnorm``: the identity (the normalisation is in the weights, :func:`weight_normalize`).

    ``reparametrize`` is what the engine applies to the initialised model (``bnexp.nn.norms.reparametrization``).
    """

    reparametrize = staticmethod(weight_normalize)

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def extra_repr(self) -> str:
        return f"{self.num_features} (weights normalised)"

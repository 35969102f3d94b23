"""Gradient measurements of a probe, for one model or for replicates stacked along a leading dimension.

* ``grad_norm``: ‖∂loss/∂W_k‖_F per weight layer k, accumulated in float64 after scaling by max|g|, so that a
  float32 gradient whose squared norm exceeds float32's (or even float64's) range is still finite
  (:func:`norms_of`). Under weight normalization (``norm=weightnorm``, W = g·V/‖V‖ row-wise) it is ‖∂loss/∂V_k‖_F,
  the gradient of the trained tensor behind W_k (``bnexp.nn.trained_weight``): W is recomputed from (g, V) at
  every access, so a W read after the forward pass would not be in its graph.
* ``grad_cosine_full`` = mean_{i<j} cos(∇_θ ℓ_i, ∇_θ ℓ_j) (signed) over every parameter θ, with ℓ_i the
  cross-entropy of sample i *in the probe's batch forward pass*: in train mode every BN layer normalises with
  the statistics of the whole probe batch, and ∇_θ ℓ_i is the gradient of that one term through them (the batch
  gradient is the mean of these). A per-sample gradient of a BN network is otherwise undefined — a sample
  normalised alone is constant — so ``torch.func.grad`` vmapped over samples (which would forward each sample
  alone) is not this quantity: :func:`per_sample_cosine` takes m backward passes through the one graph
  (``retain_graph``). With R stacked replicates (``torch.func.vmap`` forward), backward pass i differentiates
  Σ_r ℓ_{r,i}: replicates share no parameter, so slice r of each gradient is replicate r's own ∇_θ ℓ_{r,i} —
  still m passes, not R·m. The m × m Gram matrix of the per-sample gradients is accumulated parameter by
  parameter in float64 (``metrics.gram_mean_cosine``), so no (m, #parameters) float64 matrix is ever formed.
  Memory: m copies of the parameters' gradients per replicate (VGG19, m = 32, float32: 2.5 GB).

Every function uses ``torch.autograd.grad``: parameters' ``.grad`` stay untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp import metrics
from bnexp.nn.weight_norm import trained_weight

__all__ = ["frobenius64", "grad_norms", "norms_of", "per_sample_cosine", "sample_losses"]


def frobenius64(g: Tensor, batch_dims: int = 0) -> Tensor:
    """‖g‖_F in float64, scaled by max|g| first so that not even float64 squares overflow.

    The first ``batch_dims`` dimensions are replicates: one norm each. An inf entry gives inf and a nan
    entry nan (never raises); a zero gradient gives 0.
    """
    g = g.detach().to(torch.float64)
    dims = tuple(range(batch_dims, g.dim()))
    peak = g.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(torch.isfinite(peak) & (peak > 0), peak, torch.ones_like(peak))
    return scale.reshape(g.shape[:batch_dims]) * torch.linalg.vector_norm(g / scale, dim=dims)


def norms_of(grads: Sequence[Tensor | None], weights: Sequence[Tensor], batch_dims: int = 0) -> Tensor:
    """``(*replicates, K)`` float64: :func:`frobenius64` of each gradient (0 where a weight is unused)."""
    zeros = [torch.zeros(w.shape[:batch_dims], dtype=torch.float64, device=w.device) for w in weights]
    return torch.stack([frobenius64(g, batch_dims) if g is not None else zero for g, zero in zip(grads, zeros)], -1)


def sample_losses(logits: Tensor, y: Tensor, loss: str = "ce") -> Tensor:
    """Per-sample losses of ``logits`` (..., n, k) against labels ``y`` (..., n): ``ce`` cross-entropy, ``mse``
    the mean over the k classes of (logit − one_hot(y))², as ``optim.loss`` trains."""
    if loss == "mse":
        return (logits - F.one_hot(y, logits.shape[-1]).to(logits.dtype)).square().mean(-1)
    return F.cross_entropy(logits, y, reduction="none")


def grad_norms(model: nn.Module, loss: Tensor, *, retain_graph: bool = False) -> Tensor:
    """‖∂loss/∂W_k‖_F (float64, shape (K,)) for the weights of ``model.weight_layers()``, in that order (‖∂loss/∂V_k‖_F
    for a weight-normalised layer, W_k = g·V_k/‖V_k‖: :func:`bnexp.nn.trained_weight`).

    Biases (and g) are not included. ``retain_graph`` keeps the graph for a later backward (the probe's alignment).
    """
    weights = [trained_weight(module) for module in model.weight_layers()]
    return norms_of(torch.autograd.grad(loss, weights, allow_unused=True, retain_graph=retain_graph), weights)


def per_sample_cosine(losses: Tensor, params: Sequence[Tensor], *, stacked: bool) -> Tensor:
    """``grad_cosine_full`` per replicate: mean_{i<j} cos(∇_θ losses[r, i], ∇_θ losses[r, j]), shape (R,).

    ``losses`` (R, m) come from one forward pass whose graph is kept (one backward per sample i, of
    Σ_r losses[r, i]). ``params``: every parameter that needs a gradient — with ``stacked`` each has a leading
    replicate dimension R, else R = 1 and they are one model's. nan where a per-sample gradient is zero.
    """
    replicates, m = losses.shape
    grads = [torch.autograd.grad(losses[:, i].sum(), params, retain_graph=True, allow_unused=True)
             for i in range(m)]
    gram = torch.zeros((replicates, m, m), dtype=torch.float64, device=losses.device)
    for k, p in enumerate(params):
        if all(g[k] is None for g in grads):
            continue
        rows = torch.stack([g[k] if g[k] is not None else torch.zeros_like(p) for g in grads], 1 if stacked else 0)
        rows = rows.reshape(replicates, m, -1).to(torch.float64)  # (R, m, #θ_k)
        gram += rows @ rows.mT
    return metrics.gram_mean_cosine(gram)

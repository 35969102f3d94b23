"""The matrices every metric is built on, in the code's orientation ``h: (..., n, d)`` (rows are samples):
``M(H) = H Hᵀ / N`` is :func:`second_moment` (d×d), the sample Gram matrix ``Hᵀ H`` is :func:`gram` (n×n); and
the float64 preparation with the non-finite mask every metric shares."""

from __future__ import annotations

import torch
from torch import Tensor


def _prepare(h: Tensor, *, scale_free: bool = False) -> tuple[Tensor, Tensor]:
    """Return a float64 copy of h that linear algebra can take, and the (...) mask of non-finite slices.

    torch.linalg may raise or return garbage on nan/inf, so each non-finite (n, d) slice is swapped for
    eye(n, d) here and the caller puts nan back with ``_mask``. With ``scale_free``, each slice is divided by
    its largest |entry|: Gram products then neither overflow nor underflow, and scale-invariant metrics lose
    nothing by it. An all-zero slice is left as it is.
    """
    if h.dim() < 2:
        raise ValueError(f"expected a (..., n, d) tensor, got shape {tuple(h.shape)}")
    h = h.to(torch.float64)
    bad = ~torch.isfinite(h).flatten(-2).all(-1)  # (...)
    eye = torch.eye(h.shape[-2], h.shape[-1], dtype=h.dtype, device=h.device)
    h = torch.where(bad[..., None, None], eye, h)
    if scale_free:
        peak = h.abs().flatten(-2).amax(-1)[..., None, None]
        h = h / torch.where(peak > 0, peak, 1.0)
    return h, bad


def _mask(values: Tensor, bad: Tensor) -> Tensor:
    """nan where ``bad`` (shape (...)) is set; ``values`` is (...) or (..., k)."""
    bad = bad.reshape(bad.shape + (1,) * (values.dim() - bad.dim()))
    return torch.where(bad, torch.nan, values)


def _small_gram(h: Tensor) -> Tensor:
    """The smaller of h hᵀ (n×n) and hᵀ h (d×d): same nonzero spectrum, same trace and Frobenius norm."""
    return h @ h.mT if h.shape[-2] <= h.shape[-1] else h.mT @ h


def _trace(a: Tensor) -> Tensor:
    return a.diagonal(dim1=-2, dim2=-1).sum(-1)


def _unit_frobenius(h: Tensor) -> Tensor:
    """h / ‖h‖_F per slice (h already finite and scaled to max |entry| 1); a zero slice stays zero."""
    norm = torch.linalg.matrix_norm(h)[..., None, None]
    return h / torch.where(norm > 0, norm, 1.0)


# ----------------------------------------------------------------------------------------------------------
# matrices


def second_moment(h: Tensor) -> Tensor:
    """M(H) = H Hᵀ / N (d×d, uncentered; rank paper Eq 4). Code: ``h.mT @ h / n``. Returns (..., d, d)."""
    h = h.to(torch.float64)
    return h.mT @ h / h.shape[-2]


def gram(h: Tensor) -> Tensor:
    """Sample Gram matrix Hᵀ H (n×n; ortho paper Eq 2, depth paper Eq 5). Code: ``h @ h.mT``.

    Returns (..., n, n).
    """
    h = h.to(torch.float64)
    return h @ h.mT

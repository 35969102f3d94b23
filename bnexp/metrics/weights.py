"""Metrics of weight matrices (the low-rank paper, Galanti & Poggio; spec M1, M2, M4, M7).

A weight matrix is a torch ``Linear`` weight W ∈ R^{out×in}; ranks and norms are transpose invariant, so the
orientation does not matter here. Everything is float64.

* :func:`weight_spectra` — the singular values of many matrices, one batched ``torch.linalg.svdvals`` call per
  group of equal shapes (the spectra of a whole network in as few calls as its shapes allow). A matrix with a
  non-finite entry is never decomposed: its spectrum is all nan.
* :func:`normalized_rank` (M1) — from singular values: rank_ε(W) = #{i : σ_i(W/‖W‖_F) > ε} with ‖W‖_F =
  sqrt(Σσ_i²) (the paper normalises by the Frobenius norm and counts singular values ∉ [−ε, ε]); 0 for W ≡ 0,
  nan for a nan spectrum.
* :func:`weight_rank` — M1 with the collapse rule (spec §A.9): rank 0 where ‖W_t‖_F ≤ zero_rtol·‖W_0‖_F
  (W_0 the weights at step 0), because the Frobenius-normalised rank of a network collapsing to zero stays full
  while the paper reports rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["frobenius", "normalized_rank", "weight_rank", "weight_spectra"]


def weight_spectra(weights: Sequence[Tensor]) -> list[Tensor]:
    """The singular values (descending, float64, length min(out, in)) of each matrix of ``weights``.

    Matrices of equal shape are stacked and decomposed in one ``svdvals`` call, on their device, in float64.
    A matrix with a nan or inf entry is replaced by zeros for the call (an SVD of a non-finite matrix may fail or
    hang) and its spectrum set to nan afterwards; the check stays on the device (no host sync).
    """
    groups: dict[tuple[tuple[int, ...], torch.device], list[int]] = {}
    for index, w in enumerate(weights):
        groups.setdefault((tuple(w.shape), w.device), []).append(index)
    out: list[Tensor | None] = [None] * len(weights)
    for indices in groups.values():
        stack = torch.stack([weights[i].detach().to(torch.float64) for i in indices])  # (g, out, in)
        finite = torch.isfinite(stack).flatten(1).all(1)  # (g,)
        safe = torch.where(finite[:, None, None], stack, torch.zeros((), dtype=stack.dtype, device=stack.device))
        sv = torch.linalg.svdvals(safe)  # (g, min(out, in))
        sv = torch.where(finite[:, None], sv, torch.full((), torch.nan, dtype=sv.dtype, device=sv.device))
        for j, i in enumerate(indices):
            out[i] = sv[j]
    return out  # type: ignore[return-value]


def frobenius(sv: Tensor) -> Tensor:
    """‖W‖_F = sqrt(Σ σ_i²) from the singular values (..., r)."""
    return sv.to(torch.float64).square().sum(-1).sqrt()


def normalized_rank(sv: Tensor, eps: float = 1e-4) -> Tensor:
    """rank_ε(W) = #{i : σ_i / ‖W‖_F > ε} from singular values ``sv`` (..., r) (spec M1), float64 of shape (...).

    0 for W ≡ 0; nan where ``sv`` holds a nan (a non-finite W, :func:`weight_spectra`).
    """
    sv = sv.to(torch.float64)
    fro = frobenius(sv)
    count = (sv > eps * fro[..., None]).sum(-1).to(torch.float64)
    count = torch.where(fro > 0, count, torch.zeros_like(count))
    return torch.where(torch.isnan(sv).any(-1), torch.full_like(count, torch.nan), count)


def weight_rank(sv: Tensor, fro0: Tensor, eps: float = 1e-4, zero_rtol: float = 1e-4) -> Tensor:
    """rank_ε(W_t) of spec M1 with the collapse rule: :func:`normalized_rank` of ``sv`` (σ(W_t), (..., r)), set
    to 0 where ‖W_t‖_F ≤ zero_rtol·‖W_0‖_F (``fro0`` = ‖W_0‖_F, shape (...)); nan stays nan."""
    rank = normalized_rank(sv, eps)
    collapsed = frobenius(sv) <= zero_rtol * fro0.to(torch.float64)
    return torch.where(collapsed, torch.zeros_like(rank), rank)

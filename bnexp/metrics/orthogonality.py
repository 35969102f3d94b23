"""Orthogonality and isometry of a representation: the ortho paper's gap V(H), W2 to the Gaussian, the spectral
gap and L(Q_k) of its conjecture; the depth paper's isometry gap φ; cosines between samples."""

from __future__ import annotations

import torch
from torch import Tensor

from bnexp.metrics.linalg import _mask, _prepare, _trace

# orthogonality and isometry


def orthogonality_gap(h: Tensor) -> Tensor:
    """V(H) = ‖HᵀH/‖H‖_F² − I_n/n‖_F (ortho paper Eq 2), from the n×n sample Gram; range [0, sqrt(1 − 1/n)].

    Scale invariant; 0 iff the samples are orthogonal with equal norms. nan for a zero H.
    """
    c = normalized_gram(h)  # (..., n, n), trace 1; nan slices stay nan
    n = c.shape[-1]
    return torch.linalg.matrix_norm(c - torch.eye(n, dtype=c.dtype, device=c.device) / n)


def isometry_gap(h: Tensor) -> Tensor:
    """φ(H) = ln(Tr G / n) − (1/n) ln det G = ln(AM/GM of the eigenvalues λ_i of G = HᵀH) ≥ 0 (n×n Gram).

    Depth paper Eq 5 with its sign fixed (as typeset φ ≤ 0; the text and code mean ln AM/GM ≥ 0).
    Scale invariant; 0 iff G ∝ I.
    +inf when G is singular: n > d, or H numerically rank-deficient, i.e. σ_min ≤ σ_max·max(n, d)·eps64
    (the ``rank_np`` rule; a centered batch is singular). nan for a zero H.

    Numerics: λ_i = σ_i² from the SVD of H keeps the condition number unsquared. With ρ_i = λ_i/AM,
    φ = mean(ρ − 1 − ln ρ) − (ρ̄ − 1 − ln ρ̄), where ρ̄ = 1 up to rounding: each term is a nonnegative
    O((ρ − 1)²) piece and rounding in ρ moves φ only at second order, so a small φ ≈ mean((ρ − 1)²)/2 keeps
    its relative accuracy (ln AM − mean ln λ loses it to cancellation: φ ~ 1e-7 is 1e-7 of the terms).
    """
    h, bad = _prepare(h, scale_free=True)
    n, d = h.shape[-2:]
    s = torch.linalg.svdvals(h)  # (..., min(n, d))
    lam = s**2
    rho = lam / lam.mean(-1, keepdim=True)
    rho_bar = rho.mean(-1)
    phi = ((rho - 1 - torch.log(rho)).mean(-1) - (rho_bar - 1 - torch.log(rho_bar))).clamp(min=0.0)
    singular = s[..., -1] <= s[..., 0] * max(n, d) * torch.finfo(torch.float64).eps
    if n > d:
        singular = torch.ones_like(singular)
    phi = torch.where(singular, torch.inf, phi)
    return _mask(torch.where(s[..., 0] > 0, phi, torch.nan), bad)


def w2_gaussian(h: Tensor) -> Tensor:
    """W2_cond(H)² = Σ_{i=1..n} (σ_i(H/‖H‖_F) − 1/√n)², σ_n+1.. = 0 when d < n (the n×n Gram's spectrum).

    The squared Wasserstein-2 distance, conditional on H, between the laws of W H and G/√n of the ortho paper's
    Lemma 2 (W, G with i.i.d. N(0, 1/d) entries; H normalised to ‖H‖_F = 1): both are row-i.i.d. centred
    Gaussians with covariances HᵀH/d and I_n/(nd), and the Gaussian W2 formula sums to this (equal to
    2 − 2‖H‖_*/√n). Deterministically W2_cond² ≤ n·V(H)² (each term (σ − a)² ≤ n(σ² − a²)², a = 1/√n), the
    step of Lemma 2's proof. Scale invariant; range [0, 2 − 2/√n]; nan for a zero H.
    """
    h, bad = _prepare(h, scale_free=True)
    n = h.shape[-2]
    s = torch.linalg.svdvals(h)  # (..., min(n, d))
    norm = torch.linalg.vector_norm(s, dim=-1, keepdim=True)
    s = s / torch.where(norm > 0, norm, 1.0)
    w2 = (s - 1 / n**0.5).square().sum(-1) + max(0, n - s.shape[-1]) / n
    return _mask(torch.where(norm[..., 0] > 0, w2, torch.nan), bad)


def ortho_gap_spectral(h: Tensor) -> Tensor:
    """‖s/‖s‖ − 1_k/√k‖ with s the k = min(n, d) singular values of H (the ortho paper's code for its training
    figures, applied there to the output logits). Not Eq. 2: σ instead of σ², k instead of n.

    Scale and transpose invariant; range [0, sqrt(2 − 2/√k)] (0 iff all σ_i equal, the maximum at rank one);
    nan for a zero H.
    """
    h, bad = _prepare(h, scale_free=True)
    s = torch.linalg.svdvals(h)
    k = s.shape[-1]
    norm = torch.linalg.vector_norm(s, dim=-1, keepdim=True)
    gap = torch.linalg.vector_norm(s / torch.where(norm > 0, norm, 1.0) - 1 / k**0.5, dim=-1)
    return _mask(torch.where(norm[..., 0] > 0, gap, torch.nan), bad)


def normalized_gram(h: Tensor) -> Tensor:
    """HᵀH / tr(HᵀH) (n×n, trace 1; the ortho paper's Appendix F normalises QᵀQ by d, the trace for BN outputs
    with unit-norm feature rows). Returns (..., n, n); nan for a zero or non-finite H."""
    h, bad = _prepare(h, scale_free=True)
    g = h @ h.mT
    tr = _trace(g)[..., None, None]
    return _mask(torch.where(tr > 0, g / torch.where(tr > 0, tr, 1.0), torch.nan), bad)


def conjecture_gap(h: Tensor, reference: Tensor) -> Tensor:
    """L(H) = ‖HᵀH/tr(HᵀH) − K‖_F, the ortho paper's Eq. 19 with the Gram normalised to trace 1 (so that
    L = O(d^{-1/2}) is the conjecture, Eq. 20) and K (..., n, n) standing in for E_ν[QᵀQ/d]: in the paper (and
    in bnexp.chains) the time average of the normalised Gram over a separate long chain. With K = I_n/n this is
    V(H) (Eq. 2). Not in :data:`MEASURES` (it needs K); nan for a zero or non-finite H."""
    return torch.linalg.matrix_norm(normalized_gram(h) - reference.to(torch.float64))


# ----------------------------------------------------------------------------------------------------------
# cosines between samples


def _pairwise_cosines(h: Tensor) -> tuple[Tensor, Tensor]:
    """cos(h_i, h_j) for the n(n−1)/2 pairs i < j of rows (samples), (..., n(n−1)/2), nan for a zero row;
    and the (...) mask of non-finite slices."""
    h, bad = _prepare(h, scale_free=True)
    u = h / torch.linalg.vector_norm(h, dim=-1, keepdim=True)
    i, j = torch.triu_indices(h.shape[-2], h.shape[-2], offset=1, device=h.device)
    return (u @ u.mT)[..., i, j], bad


def mean_abs_cosine(h: Tensor) -> Tensor:
    """mean_{i<j} |⟨h_i, h_j⟩| / (‖h_i‖‖h_j‖) over the n samples (ortho paper Fig 1, where n = 2; rank
    paper's directional gradient alignment A_last, rank Prop. 19). nan if a sample is zero or n < 2."""
    cos, bad = _pairwise_cosines(h)
    return _mask(cos.abs().mean(-1), bad)


def mean_cosine(h: Tensor) -> Tensor:
    """mean_{i≠j} ⟨h_i, h_j⟩ / (‖h_i‖‖h_j‖), the plain cosine over distinct pairs of samples (depth paper
    App. E: plain cosine over distinct pairs). nan if a sample is zero or n < 2."""
    cos, bad = _pairwise_cosines(h)
    return _mask(cos.mean(-1), bad)


def gram_mean_cosine(g: Tensor) -> Tensor:
    """mean_{i<j} G_ij / sqrt(G_ii G_jj) from a Gram matrix G (..., m, m) of m vectors v_i (G_ij = ⟨v_i, v_j⟩):
    the mean signed cosine over the m(m−1)/2 pairs, in float64. Used where the vectors are too long to stack
    (per-sample gradients of every parameter, rank spec §0.4 (b): ``probe.gradients.per_sample_cosine``
    accumulates G parameter by parameter). nan if some v_i = 0 or m < 2."""
    g = g.to(torch.float64)
    m = g.shape[-1]
    norms = g.diagonal(dim1=-2, dim2=-1).clamp(min=0.0).sqrt()
    cos = g / (norms[..., :, None] * norms[..., None, :])
    i, j = torch.triu_indices(m, m, offset=1, device=g.device)
    return cos[..., i, j].mean(-1)

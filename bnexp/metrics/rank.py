"""Ranks of a representation: numerical ranks from the SVD of h itself (the Gram eigenvalues would square the
condition number), the rank paper's soft rank rank_τ (Eq. 3) and r(H) lower bound, the top eigenvalues of M(H),
E‖M‖_F² and the regularity terms (markov paper Eq. 49), and the relative distance to rank one of a token matrix
(Dong et al. 2021's residual)."""

from __future__ import annotations

import torch
from torch import Tensor

from bnexp.errors import ConfigError
from bnexp.metrics.linalg import _mask, _prepare, _small_gram, _trace, _unit_frobenius

# numerical ranks (SVD of h itself: Gram eigenvalues square the condition number)


def numerical_rank(
    h: Tensor,
    tol: float | None = None,
    *,
    rtol: float | None = None,
    normalize: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Number of singular values of H above max(tol, rtol·σ_max), as ``torch.linalg.matrix_rank`` counts them.

    ``tol`` is absolute. With neither given, rtol = max(n, d)·eps(dtype) (numpy's and torch's default);
    with only ``tol`` given, rtol = 0. ``normalize`` divides H by ‖H‖_F first (in float64); ``dtype`` is the
    precision of the SVD. Transpose invariant, so the orientation does not matter. The rank of 0 is 0.
    """
    h, bad = _prepare(h, scale_free=normalize)
    if normalize:
        h = _unit_frobenius(h)
    s = torch.linalg.svdvals(h.to(dtype)).to(torch.float64)  # (..., min(n, d)), descending
    if rtol is None:
        rtol = max(h.shape[-2:]) * torch.finfo(dtype).eps if tol is None else 0.0
    threshold = torch.clamp(rtol * s[..., :1], min=0.0 if tol is None else tol)
    return _mask((s > threshold).sum(-1).to(torch.float64), bad)


def rank_torch(h: Tensor) -> Tensor:
    """Rank papers' ``torch.matrix_rank(H/‖H‖_F)`` in float32: #{σ_i > σ_max·max(n, d)·1.19e-7}.

    The precision is part of the definition (rank Figs 1, 5, 13; footnote 3 writes the
    tolerance as σ_max·d·10⁻⁷).
    """
    return numerical_rank(h, normalize=True, dtype=torch.float32)


def rank_np(h: Tensor) -> Tensor:
    """``numpy.linalg.matrix_rank(H)`` in float64: #{σ_i > σ_max·max(n, d)·2.22e-16} (code of 000 Fig 2).

    The threshold is relative, so dividing by ‖H‖_F first (to keep huge or tiny inputs finite) changes
    nothing.
    """
    return numerical_rank(h, normalize=True, dtype=torch.float64)


def rank_abs(h: Tensor, tol: float = 1e-9) -> Tensor:
    """#{σ_i(H/‖H‖_F) ≥ tol} in float64 (001 Fig 1: "normalize each matrix and zero-out singular values with
    absolute values less than 10^-9")."""
    h, bad = _prepare(h, scale_free=True)
    s = torch.linalg.svdvals(_unit_frobenius(h))
    return _mask((s >= tol).sum(-1).to(torch.float64), bad)


def rank_gram_float32(h: Tensor) -> Tensor:
    """The depth paper's Table E1 rank: ``torch.linalg.matrix_rank(X @ X.T)`` of the n×n sample Gram matrix
    G = HᵀH (code: ``h @ h.mT``), formed and decomposed in float32 with torch's default tolerance:
    #{σ_i(G) > σ_max(G)·n·1.19e-7}.

    The precision is part of the definition: squaring the condition number of correlated inputs pushes small
    eigenvalues below the float32 threshold, so the rank can fall below n (and even decrease with n) where
    the float64 rank of H itself (``rank_np``) is n. No rescaling (raw pixels neither overflow nor underflow).
    """
    h, bad = _prepare(h)
    h = h.to(torch.float32)
    return _mask(torch.linalg.matrix_rank(h @ h.mT).to(torch.float64), bad)


# ----------------------------------------------------------------------------------------------------------
# spectra of M(H)


def soft_rank(h: Tensor, tau: float = 0.5) -> Tensor:
    """rank_τ(H) = #{i : σ_i²/N ≥ τ}, the eigenvalues of M(H) at least τ, after rescaling H so that Tr M = d.

    The rescaling H ← H·sqrt(dN)/‖H‖_F is a no-op for BN outputs (H ∈ 𝓗, Tr M = d) and makes the count
    meaningful elsewhere (the papers do not say how they normalise other matrices). The count runs over the
    min(n, d) singular values of H, so τ = 0 gives min(n, d). Lemma 2: rank_τ(H) ≥ (1 − τ)² r(H) for H ∈ 𝓗.
    nan for a zero H.
    """
    if not 0.0 <= tau <= 1.0:
        raise ConfigError("tau", tau, "must lie in [0, 1]")
    h, bad = _prepare(h, scale_free=True)
    g = _small_gram(h)
    tr = _trace(g)
    # eigenvalues of the rescaled M: d·λ(G)/Tr G; clamp the roundoff negatives of zero eigenvalues
    lam = torch.linalg.eigvalsh(g).clamp(min=0.0) * (h.shape[-1] / tr)[..., None]
    count = (lam >= tau).sum(-1).to(torch.float64)
    return _mask(torch.where(tr > 0, count, torch.nan), bad)


def soft_rank_eq3(h: Tensor, tau: float = 0.5) -> Tensor:
    """rank_τ(H) = Σ_i 1(σ_i²/N ≥ τ) as the rank paper's Eq. 3 writes it: the eigenvalues of M(H) = HHᵀ/N at
    least τ, with no rescaling. Equal to :func:`soft_rank` on BN outputs (Tr M = d); smaller where Tr M < d, e.g.
    after a ReLU that follows BN (Tr M ≈ d/2), where :func:`soft_rank`'s rescaling raises the count."""
    if not 0.0 <= tau <= 1.0:
        raise ConfigError("tau", tau, "must lie in [0, 1]")
    h, bad = _prepare(h)
    lam = torch.linalg.svdvals(h) ** 2 / h.shape[-2]
    return _mask((lam >= tau).sum(-1).to(torch.float64), bad)


def rank_lower_bound(h: Tensor) -> Tensor:
    """r(H) = Tr(M)² / ‖M‖_F² = (Σσ_i²)² / Σσ_i⁴ (rank paper Lemma 1: 1 ≤ r(H) ≤ rank(H)).

    Invariant to scale and to transposition, so it is computed from the smaller Gram matrix. nan for a zero H.
    """
    h, bad = _prepare(h, scale_free=True)
    g = _small_gram(h)
    return _mask(_trace(g) ** 2 / torch.linalg.matrix_norm(g) ** 2, bad)


def top_eigenvalues(h: Tensor, k: int = 10) -> Tensor:
    """The k largest eigenvalues of M(H) = H Hᵀ/N, i.e. σ_i²/N, descending, zero-padded when k > min(n, d).

    No rescaling (rank paper Fig 3b / Markov paper Fig 3). Taken from the singular values of H rather than an
    eigendecomposition of M, so eigenvalues ~1e-13 of a nearly collinear H are resolved. Returns (..., k).
    """
    if k < 1:
        raise ConfigError("k", k, "must be a positive integer")
    h, bad = _prepare(h)
    lam = torch.linalg.svdvals(h) ** 2 / h.shape[-2]  # (..., min(n, d))
    lam = torch.nn.functional.pad(lam, (0, max(0, k - lam.shape[-1])))[..., :k]
    return _mask(lam, bad)


def second_moment_fro2(h: Tensor) -> Tensor:
    """‖M(H)‖_F² with M = H Hᵀ/N (rank paper Fig 9, Lemma 13). Equal to ‖HᵀH‖_F²/N², from the smaller Gram."""
    h, bad = _prepare(h)
    return _mask(torch.linalg.matrix_norm(_small_gram(h)) ** 2 / h.shape[-2] ** 2, bad)


def regularity_terms(h: Tensor) -> Tensor:
    """[Tr(diag(M²)²), Tr(M³)] of M = H Hᵀ/N, with Tr(diag(M²)²) = Σ_i (Σ_k M_ik²)². Returns (..., 2).

    The regularity constant α = E Tr(diag(M²)²) / E Tr(M³) (rank paper Eq 49, Markov paper Eq 54) is a ratio
    of averages over layers, so callers average the two terms separately. diag(M²) needs the d×d M itself.
    """
    h, bad = _prepare(h)
    m = h.mT @ h / h.shape[-2]  # (..., d, d)
    num = ((m**2).sum(-1) ** 2).sum(-1)
    den = ((m @ m) * m).sum((-2, -1))  # Tr(M²M) = Σ_ij (M²)_ij M_ji, M symmetric
    return _mask(torch.stack([num, den], dim=-1), bad)


# ----------------------------------------------------------------------------------------------------------
# distance to rank one (all rows equal)


def token_residual(h: Tensor) -> Tensor:
    """The relative residual of Dong, Cordonnier, Loukas (2021): ‖res(X)‖_F / ‖X‖_F with res(X) = X − 1 x̄ᵀ.

    X ∈ R^{n×d} has the n tokens as rows (here: the n samples of ``h``, code orientation), and x̄ = (1/n) Xᵀ 1 is the
    mean token, the minimiser of ‖X − 1 xᵀ‖_F over x ∈ R^d; so the value is the distance of X to the nearest
    matrix whose tokens are all equal (rank one of the form 1 xᵀ), relative to ‖X‖_F, in [0, 1]. It is 0 exactly
    when every token is the same and is scale-free. The paper measures res with the composite ℓ1,∞ norm
    ‖res‖_1‖res‖_∞ (the geometric mean of the largest column and row ℓ1 norms); we use the Frobenius norm, whose
    minimiser over x is the mean token in closed form. In the papers' orientation H = Xᵀ (d×N) it is the centred
    ‖H − H̄‖_F / ‖H‖_F. nan for a zero matrix.
    """
    h, bad = _prepare(h, scale_free=True)
    num = torch.linalg.matrix_norm(h - h.mean(-2, keepdim=True))
    den = torch.linalg.matrix_norm(h)
    return _mask(torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan), bad)

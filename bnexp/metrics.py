"""Metrics on representations: numerical ranks, r(H), soft rank, spectra, V, φ and cosines.

Every function takes ``h`` of shape ``(..., n, d)``: rows are the n samples, columns the d features, with any
number of leading batch dimensions (seeds, γ values). The papers write ``H ∈ R^{d×N}``, so

* the second-moment matrix ``M(H) = H Hᵀ / N`` is ``h.mT @ h / n`` (d×d), and
* the sample Gram matrix ``Hᵀ H`` is ``h @ h.mT`` (n×n).

Functions are batched without Python loops and return float64 tensors of shape ``(...)`` unless stated.
They compute in float64 unless the metric is defined by its precision (``rank_torch`` is float32).

Non-finite input never raises: a batch element whose (n, d) slice holds nan or inf gives nan, and the other
elements are unaffected. Where a metric is undefined on a finite input (r, V, φ, cosines of a zero matrix or a
zero row) it gives nan; ``isometry_gap`` gives +inf for a singular Gram matrix.

Sources: the rank and markov papers (ranks, r, rank_τ, regularity), the ortho paper (V, |cos|, W2, the spectral
gap, L), the depth paper (φ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from bnexp.errors import ConfigError

# ----------------------------------------------------------------------------------------------------------
# helpers


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


# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# registry for engines


MEASURES: dict[str, Callable[..., Tensor]] = {
    "rank_torch": rank_torch,
    "rank_np": rank_np,
    "rank_abs": rank_abs,
    "rank_gram_float32": rank_gram_float32,
    "soft_rank": soft_rank,
    "soft_rank_eq3": soft_rank_eq3,
    "rank_lower_bound": rank_lower_bound,
    "top_eigenvalues": top_eigenvalues,
    "second_moment_fro2": second_moment_fro2,
    "regularity_terms": regularity_terms,
    "orthogonality_gap": orthogonality_gap,
    "isometry_gap": isometry_gap,
    "mean_abs_cosine": mean_abs_cosine,
    "mean_cosine": mean_cosine,
    "w2_gaussian": w2_gaussian,
    "ortho_gap_spectral": ortho_gap_spectral,
}

# Metrics that are identically +inf when there are more samples than features (config validation uses it).
REQUIRES_N_LE_D: frozenset[str] = frozenset({"isometry_gap"})


def measure(
    h: Tensor, names: str | Iterable[str], *, tau: float = 0.5, k: int = 10, tol: float = 1e-9
) -> dict[str, Tensor]:
    """Evaluate the named metrics on h (..., n, d) and return a flat dict of (...)-shaped float64 tensors.

    ``top_eigenvalues`` expands to keys ``eig_1`` … ``eig_k`` and ``regularity_terms`` to ``regularity_num``
    (Tr(diag(M²)²)) and ``regularity_den`` (Tr(M³)); every other name is its own key. ``tau`` goes to
    ``soft_rank``, ``k`` to ``top_eigenvalues``, ``tol`` to ``rank_abs``. Unknown names raise before any work.
    """
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in MEASURES:
            raise ConfigError("metrics", name, sorted(MEASURES))
    options = {"soft_rank": {"tau": tau}, "soft_rank_eq3": {"tau": tau}, "top_eigenvalues": {"k": k},
               "rank_abs": {"tol": tol}}
    out: dict[str, Tensor] = {}
    for name in names:
        value = MEASURES[name](h, **options.get(name, {}))
        if name == "top_eigenvalues":
            out.update(zip([f"eig_{i}" for i in range(1, k + 1)], value.unbind(-1)))
        elif name == "regularity_terms":
            out.update(zip(["regularity_num", "regularity_den"], value.unbind(-1)))
        else:
            out[name] = value
    return out


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

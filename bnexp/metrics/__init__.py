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
gap, L), the depth paper (φ), Dong et al. 2021 (the token residual of attention stacks).

Layout: :mod:`~bnexp.metrics.linalg` (M(H), the Gram matrix, the float64 preparation), :mod:`~bnexp.metrics.rank`
(ranks and spectra), :mod:`~bnexp.metrics.orthogonality` (V, φ, W2, cosines). A new metric is a function in the
module of its kind and one entry in :data:`MEASURES`, which the engines and ``probe.metrics`` read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from bnexp.errors import ConfigError
from bnexp.metrics.linalg import gram, second_moment
from bnexp.metrics.orthogonality import (
    conjecture_gap,
    gram_mean_cosine,
    isometry_gap,
    mean_abs_cosine,
    mean_cosine,
    normalized_gram,
    ortho_gap_spectral,
    orthogonality_gap,
    w2_gaussian,
)
from bnexp.metrics.rank import (
    numerical_rank,
    rank_abs,
    rank_gram_float32,
    rank_lower_bound,
    rank_np,
    rank_torch,
    regularity_terms,
    second_moment_fro2,
    soft_rank,
    soft_rank_eq3,
    token_residual,
    top_eigenvalues,
)

__all__ = [
    "MEASURES", "REQUIRES_N_LE_D", "conjecture_gap", "gram", "gram_mean_cosine", "isometry_gap", "mean_abs_cosine",
    "mean_cosine", "measure", "normalized_gram", "numerical_rank", "ortho_gap_spectral", "orthogonality_gap",
    "rank_abs", "rank_gram_float32", "rank_lower_bound", "rank_np", "rank_torch", "regularity_terms",
    "second_moment", "second_moment_fro2", "soft_rank", "soft_rank_eq3", "token_residual", "top_eigenvalues",
    "w2_gaussian",
]

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
    "token_residual": token_residual,
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

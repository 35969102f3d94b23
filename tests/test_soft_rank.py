"""The soft rank against the rank paper's Eq. 3 computed directly: rank_τ(H) = Σ_i 1(σ_i²/N ≥ τ), H ∈ R^{d×N}.

The reference here is numpy float64 from the formula as printed, with no rescaling, so it shares nothing with
``metrics.soft_rank``'s Tr M = d normalisation: the two agree on BN outputs (Tr M = d) and part where Tr M < d,
as after a ReLU that follows BN (Tr M ≈ d/2), where ``soft_rank`` counts ≈ 1.6× more (rank/fig2's ReLU panel).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnexp import metrics as m

SHAPES = [(5, 9), (7, 7), (12, 4), (32, 32)]  # (n, d) = (N samples, d features)


def eq3(h: np.ndarray, tau: float = 0.5) -> int:
    """Eq. 3 on H = hᵀ (d×N): the singular values σ_i of H, counted where σ_i²/N ≥ τ."""
    H = np.asarray(h, dtype=np.float64).T
    sigma = np.linalg.svd(H, compute_uv=False)
    return int(np.sum(sigma**2 / H.shape[1] >= tau))


def bn(h: np.ndarray) -> np.ndarray:
    """Centred BN over the samples (rows of h): every feature has mean 0 and mean square 1, so M_ii = 1."""
    z = h - h.mean(0)
    return z / np.sqrt((z**2).mean(0))


def gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
@pytest.mark.parametrize("n,d", SHAPES)
def test_soft_rank_eq3_is_the_papers_formula_at_any_scale(n: int, d: int, scale: float, tau: float):
    h = scale * gaussian(n, d, seed=n * d) * np.linspace(0.2, 2.0, d)  # uneven features spread the spectrum
    assert m.soft_rank_eq3(torch.tensor(h), tau).item() == eq3(h, tau)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n,d", SHAPES)
def test_soft_rank_is_the_papers_formula_on_bn_outputs(n: int, d: int, seed: int):
    h = bn(gaussian(n, d, seed) * np.linspace(0.2, 2.0, d))
    assert np.isclose(np.trace(h.T @ h / n), d)  # Tr M = d: the rescaling is a no-op
    for tau in (0.25, 0.5, 0.75):
        assert m.soft_rank(torch.tensor(h), tau).item() == eq3(h, tau)


def test_soft_rank_exceeds_the_papers_formula_after_relu_that_follows_bn():
    """ReLU(BN(Z)) has Tr M ≈ d/2: soft_rank's rescaling to Tr M = d doubles every eigenvalue before the
    threshold, so it counts more than Eq. 3 (about 1.6× for Gaussian 32×32 pre-activations)."""
    ratios = []
    for seed in range(20):
        h = np.maximum(bn(gaussian(32, 32, seed)), 0.0)
        assert 0.4 < np.trace(h.T @ h / 32) / 32 < 0.6
        ours, paper = m.soft_rank(torch.tensor(h)).item(), eq3(h)
        assert ours >= paper
        ratios.append(ours / paper)
    assert 1.4 < np.mean(ratios) < 1.9


def test_soft_rank_eq3_in_measure_takes_tau():
    h = torch.tensor(bn(gaussian(16, 16, 3)))
    got = m.measure(h, ["soft_rank_eq3"], tau=0.9)
    assert got["soft_rank_eq3"].item() == eq3(h.numpy(), 0.9)

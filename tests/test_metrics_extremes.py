"""The scale-free metrics on what deep vanilla chains produce: H with ‖H‖_F near 1e±150, where r's and the spectra's
squared Gram products of the raw H overflow or underflow float64 (‖H‖_F⁴ ≈ 1e±600), near 1e±300, where the Gram
itself does, and the all-zero matrix (a chain that underflowed).

Oracles: numpy float64 from the formula in each docstring, computed on the unit-scale matrix A. The scales are
2^±500 and 2^±1000 (≈ 3e±150 and 1e±301 times ‖A‖_F): multiplying by a power of two is exact (no entry of these A
becomes subnormal), so the scaled H holds exactly the matrix the oracle reads. Two matrices: a full-rank Gaussian A
(n = 6 < d = 8, every value finite) and the nearly rank-one A of a deep vanilla chain, u vᵀ + 1e-4·x yᵀ +
1e-11·z wᵀ (σ ≈ 1, 1e-4, 1e-11 of σ_max). Expected on the zero matrix (the docstrings): nan for every ratio (r,
rank_1/2, V, φ, W2, the spectral gap, the normalised Gram, the cosines), 0 for the numerical ranks.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bnexp import metrics as m

N, D = 6, 8
SCALES = [2.0**500, 2.0**-500, 2.0**1000, 2.0**-1000]  # ‖H‖_F ≈ 2e151, 2e-150 and, at float64's edge, 7e301, 6e-301
SCALE_IDS = ["1e+150", "1e-150", "1e+300", "1e-300"]
EPS32, EPS64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def gaussian() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, D))


def nearly_rank_one() -> np.ndarray:
    """The last layer of a deep vanilla chain: one direction, and two others at 1e-4 and 1e-11 of it."""
    rng = np.random.default_rng(1)
    u, x, z = (q / np.linalg.norm(q) for q in rng.standard_normal((3, N)))
    v, y, w = (q / np.linalg.norm(q) for q in rng.standard_normal((3, D)))
    return np.outer(u, v) + 1e-4 * np.outer(x, y) + 1e-11 * np.outer(z, w)


MATRICES = {"gaussian": gaussian, "nearly_rank_one": nearly_rank_one}


def cosines(a: np.ndarray) -> list[float]:
    """cos(a_i, a_j) over the pairs i < j of rows (samples), by an explicit loop."""
    return [float(a[i] @ a[j] / (np.linalg.norm(a[i]) * np.linalg.norm(a[j])))
            for i, j in itertools.combinations(range(a.shape[0]), 2)]


def oracle(a: np.ndarray) -> dict[str, float | np.ndarray]:
    """Every scale-free metric of a (n, d) in numpy float64, in the papers' orientation H = aᵀ (d×N)."""
    n, d = a.shape
    s = np.linalg.svd(a, compute_uv=False)  # σ_i(H), descending
    unit = a / np.linalg.norm(a)
    g = a @ a.T  # HᵀH, n×n
    lam_g = np.linalg.eigvalsh(g)
    lam_m = s**2 / n * d / np.sum(s**2 / n)  # eigenvalues of M(H) rescaled to Tr M = d
    s_unit = s / np.linalg.norm(s)
    singular = s[-1] <= s[0] * max(n, d) * EPS64 or n > d
    unit32 = unit.astype(np.float32)
    return {
        "rank_np": np.linalg.matrix_rank(a),
        "rank_abs": int(np.sum(np.linalg.svd(unit, compute_uv=False) >= 1e-9)),
        "rank_torch": np.linalg.matrix_rank(unit32, tol=float(np.linalg.svd(unit32, compute_uv=False)[0])
                                            * max(n, d) * EPS32),
        "soft_rank": int(np.sum(lam_m >= 0.5)),
        "rank_lower_bound": np.sum(s**2) ** 2 / np.sum(s**4),
        "orthogonality_gap": np.linalg.norm(g / np.trace(g) - np.eye(n) / n),
        "isometry_gap": math.inf if singular else math.log(np.mean(lam_g)) - np.mean(np.log(lam_g)),
        "w2_gaussian": np.sum((s_unit - 1 / math.sqrt(n)) ** 2) + max(0, n - len(s)) / n,
        "ortho_gap_spectral": np.linalg.norm(s_unit - 1 / math.sqrt(len(s))),
        "mean_abs_cosine": np.mean(np.abs(cosines(a))),
        "mean_cosine": np.mean(cosines(a)),
        "normalized_gram": g / np.trace(g),
    }


METRICS = {**{name: m.MEASURES[name] for name in oracle(gaussian()) if name in m.MEASURES},
           "normalized_gram": m.normalized_gram}
COUNTS = {"rank_np", "rank_abs", "rank_torch", "soft_rank"}
ZERO = {name: (0.0 if name in {"rank_np", "rank_abs", "rank_torch"} else math.nan) for name in METRICS}


def test_oracle_covers_every_metric_and_the_matrices_are_what_they_claim():
    assert set(METRICS) == set(oracle(gaussian()))
    deep = oracle(nearly_rank_one())
    assert (deep["rank_np"], deep["rank_abs"], deep["rank_torch"], deep["soft_rank"]) == (3, 2, 2, 1)
    assert deep["isometry_gap"] == math.inf and 1 < deep["rank_lower_bound"] < 1 + 1e-6
    assert all(math.isfinite(float(np.max(v))) for v in oracle(gaussian()).values())
    for a in (gaussian(), nearly_rank_one()):  # scaling by 2^-1000 stays exact: no entry turns subnormal
        assert np.abs(a).min() * SCALES[3] > np.finfo(np.float64).tiny
    # out of float64's range: Tr(G)² at every scale, G itself at 2^±1000; a metric has to rescale first
    with np.errstate(over="ignore", under="ignore"):
        for scale in SCALES:
            g = (scale * gaussian()) @ (scale * gaussian()).T
            assert np.trace(g) ** 2 == 0 or not math.isfinite(np.trace(g) ** 2)
            assert (np.trace(g) == 0 or not math.isfinite(np.trace(g))) == (scale in SCALES[2:])


@pytest.mark.parametrize("scale", SCALES, ids=SCALE_IDS)
@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("name", METRICS)
def test_scale_free_metrics_at_extreme_norms(name: str, matrix: str, scale: float):
    a = MATRICES[matrix]()
    got = METRICS[name](torch.from_numpy(scale * a)).numpy()
    want = oracle(a)[name]
    if name in COUNTS:
        assert got == want, (name, matrix, got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, err_msg=f"{name} on {matrix}")


@pytest.mark.parametrize("name", METRICS)
def test_zero_matrix_gives_nan_for_ratios_and_zero_rank(name: str):
    got = METRICS[name](torch.zeros(N, D, dtype=torch.float64))
    want = ZERO[name]
    if math.isnan(want):
        assert torch.isnan(got).all(), (name, got)
    else:
        assert torch.all(got == want), (name, got)


@pytest.mark.parametrize("name", METRICS)
def test_a_zero_or_extreme_slice_leaves_the_others_of_a_batch_alone(name: str):
    """One batch of (2^1000·A, 0, 2^-1000·A, A): each slice gets its own value (the per-slice peak rescaling)."""
    a = gaussian()
    batch = torch.from_numpy(np.stack([SCALES[2] * a, np.zeros_like(a), SCALES[3] * a, a]))
    got = METRICS[name](batch).numpy()
    want = oracle(a)[name]
    for i in (0, 2, 3):
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-15, err_msg=f"{name}, slice {i}")
    zero = got[1]
    assert np.isnan(zero).all() if math.isnan(ZERO[name]) else np.all(zero == ZERO[name]), (name, zero)


def test_float32_input_near_its_own_extremes():
    """A float32 chain under- and overflows near 1e±38, and its Gram products already near 1e±19: at 2^±110
    (≈ 1e±33) the metrics, which compute in float64, still read the matrix the oracle reads (A rounded to float32
    first; the power of two keeps the rounding exact, as no entry turns subnormal)."""
    a = gaussian().astype(np.float32).astype(np.float64)
    want = oracle(a)
    assert np.abs(a).min() * 2.0**-110 > np.finfo(np.float32).tiny and np.abs(a).max() * 2.0**110 < 1e38
    for scale in (2.0**110, 2.0**-110):
        h = torch.from_numpy(scale * a).to(torch.float32)
        for name, fn in METRICS.items():
            np.testing.assert_allclose(fn(h).numpy(), want[name], rtol=1e-9, atol=1e-15, err_msg=name)

"""Tests for bnexp.metrics.

1. Oracles: an independent numpy float64 implementation in the papers' orientation H = hᵀ ∈ R^{d×N}.
2. Closed forms: orthogonal, rank-one and diagonal inputs, rank thresholds, small isometry gaps.
3. Properties: Lemmas 1 and 2 of the rank paper, scale and transpose invariance.
4. Errors and non-finite input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnexp import metrics as m
from bnexp.errors import ConfigError

SHAPES = [(5, 9), (7, 7), (12, 4)]  # (n, d): n < d, n = d, n > d
SCALE_FREE = [
    "rank_torch",
    "rank_np",
    "rank_abs",
    "soft_rank",
    "rank_lower_bound",
    "orthogonality_gap",
    "isometry_gap",
    "mean_abs_cosine",
    "mean_cosine",
    "token_residual",
]
EPS32, EPS64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def orthogonal(k: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(randn(k, k, seed=seed))
    return q


def with_singular_values(s: list[float], n: int, d: int, seed: int = 0) -> torch.Tensor:
    """An (n, d) matrix U diag(s) Vᵀ with random orthogonal U, V and the given singular values."""
    k = len(s)
    sigma = torch.diag(torch.tensor(s, dtype=torch.float64))
    return orthogonal(n, seed)[:, :k] @ sigma @ orthogonal(d, seed + 1)[:k]


def bn_output(n: int, d: int, seed: int) -> torch.Tensor:
    """A point of 𝓗: each feature (column) has unit second moment over the batch, so Tr M = d."""
    h = randn(n, d, seed=seed)
    return h / h.pow(2).mean(0).sqrt()


# ----------------------------------------------------------------------------------------------------------
# 1. numpy oracle, written in the papers' orientation: H is d×N, columns are samples


def oracle(h: np.ndarray, tau: float = 0.5, k: int = 10, tol: float = 1e-9) -> dict[str, np.ndarray]:
    H = np.asarray(h, dtype=np.float64).T
    d, N = H.shape
    M = H @ H.T / N
    Hn = H / np.linalg.norm(H)
    Hs = H * np.sqrt(d * N) / np.linalg.norm(H)  # Tr M = d
    eig_M = np.sort(np.linalg.eigvalsh(M))[::-1]
    G = H.T @ H
    lam_G = np.linalg.eigvalsh(G)
    cos = [
        H[:, i] @ H[:, j] / (np.linalg.norm(H[:, i]) * np.linalg.norm(H[:, j]))
        for i in range(N)
        for j in range(N)
        if i != j
    ]
    return {
        "rank_torch": np.linalg.matrix_rank(Hn.astype(np.float32)),
        "rank_gram_float32": np.linalg.matrix_rank(H.T.astype(np.float32) @ H.astype(np.float32)),
        "rank_np": np.linalg.matrix_rank(H),
        "rank_abs": np.sum(np.linalg.svd(Hn, compute_uv=False) >= tol),
        "soft_rank": np.sum(np.linalg.eigvalsh(Hs @ Hs.T / N) >= tau),
        "soft_rank_eq3": np.sum(np.linalg.svd(H, compute_uv=False) ** 2 / N >= tau),  # rank paper Eq. 3
        "rank_lower_bound": np.trace(M) ** 2 / np.sum(M**2),
        "top_eigenvalues": np.concatenate([eig_M, np.zeros(k)])[:k],
        "second_moment_fro2": np.sum(M**2),
        "regularity_terms": np.array(
            [sum(sum(M[i, j] ** 2 for j in range(d)) ** 2 for i in range(d)), np.trace(M @ M @ M)]
        ),
        "orthogonality_gap": np.linalg.norm(G / np.sum(H**2) - np.eye(N) / N),
        "isometry_gap": np.log(lam_G.mean()) - np.log(lam_G).mean() if N <= d else np.inf,
        "mean_abs_cosine": np.mean(np.abs(cos)),
        "mean_cosine": np.mean(cos),
        "w2_gaussian": np.sum((np.pad(np.linalg.svd(Hn, compute_uv=False), (0, max(0, N - d))) - N**-0.5) ** 2),
        "ortho_gap_spectral": np.linalg.norm((s := np.linalg.svd(H, compute_uv=False)) / np.linalg.norm(s)
                                             - len(s) ** -0.5),
        "token_residual": np.linalg.norm(H - H.mean(axis=1, keepdims=True)) / np.linalg.norm(H),  # Dong et al.
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,d", SHAPES)
def test_every_measure_matches_numpy_oracle(n: int, d: int, dtype: torch.dtype):
    h = randn(2, n, d, seed=n * d, dtype=dtype)
    for name, fn in m.MEASURES.items():
        got = fn(h)
        assert got.dtype == torch.float64, name
        for b in range(2):
            want = oracle(h[b].double().numpy())[name]
            np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("tau", [0.25, 0.5, 0.9])
def test_soft_rank_matches_oracle_for_several_tau(tau: float):
    for seed, (n, d) in enumerate(SHAPES):
        h = randn(n, d, seed=seed) * randn(1, d, seed=seed + 9)  # uneven feature scales spread the spectrum
        assert m.soft_rank(h, tau).item() == oracle(h.numpy(), tau=tau)["soft_rank"]


def test_top_eigenvalues_k_beyond_min_n_d_pads_zeros():
    h = randn(3, 5, seed=1)
    got = m.top_eigenvalues(h, k=7)
    assert got.shape == (7,)
    np.testing.assert_allclose(got.numpy(), oracle(h.numpy(), k=7)["top_eigenvalues"], atol=1e-12)
    assert torch.all(got[3:] == 0)


def test_batched_equals_loop_over_batch():
    h = randn(3, 4, 6, 8, seed=3)
    for name, fn in m.MEASURES.items():
        got = fn(h)
        assert got.shape[:2] == (3, 4), name
        for a in range(3):
            for b in range(4):
                torch.testing.assert_close(got[a, b], fn(h[a, b]), rtol=1e-10, atol=1e-13, msg=name)


def test_second_moment_and_gram_orientation():
    h = randn(4, 6, seed=2)
    H = h.numpy().T  # d×N as in the papers
    np.testing.assert_allclose(m.second_moment(h).numpy(), H @ H.T / 4, rtol=1e-13)
    np.testing.assert_allclose(m.gram(h).numpy(), H.T @ H, rtol=1e-13)
    assert m.second_moment(randn(2, 3, 4, 6)).shape == (2, 3, 6, 6)
    assert m.gram(randn(2, 3, 4, 6)).shape == (2, 3, 4, 4)


def test_numerical_rank_tol_and_rtol_follow_numpy():
    h = with_singular_values([1.0, 0.3, 1e-3, 1e-6, 1e-9], 6, 8)
    H = h.numpy().T
    for tol in [1e-2, 1e-4, 1e-7, 1e-12]:
        assert m.numerical_rank(h, tol).item() == np.linalg.matrix_rank(H, tol=tol)
    for rtol in [1e-2, 1e-4, 1e-7]:
        assert m.numerical_rank(h, rtol=rtol).item() == np.linalg.matrix_rank(H, rtol=rtol)
    # absolute tolerance applies after normalisation when asked: ‖h‖_F = 10 moves σ = 1e-3 below 1e-3
    assert m.numerical_rank(10 * h, 1e-3).item() == 3
    assert m.numerical_rank(10 * h, 1e-3, normalize=True).item() == 2


def test_rank_torch_is_torch_matrix_rank_of_normalised_float32():
    h = with_singular_values([1.0, 0.5, 3e-6, 1e-7], 10, 16)
    want = torch.linalg.matrix_rank((h / torch.linalg.matrix_norm(h)).float())
    assert m.rank_torch(h).item() == want.item() == 3


# ----------------------------------------------------------------------------------------------------------
# 2. closed forms


@pytest.mark.parametrize("n,d", [(6, 6), (4, 9)])
def test_orthogonal_input(n: int, d: int):
    h = math.sqrt(n) * orthogonal(d, seed=5)[:n]  # orthonormal rows scaled by √n
    assert m.orthogonality_gap(h).item() == pytest.approx(0, abs=1e-14)
    assert m.isometry_gap(h).item() == pytest.approx(0, abs=1e-14)
    assert m.rank_lower_bound(h).item() == pytest.approx(n, rel=1e-13)
    assert m.soft_rank(h).item() == n  # = d when n = d
    assert m.soft_rank(torch.eye(n, d), 1.0).item() == n  # eigenvalues equal to τ = 1 count (≥)
    assert m.mean_cosine(h).item() == pytest.approx(0, abs=1e-14)
    assert m.mean_abs_cosine(h).item() == pytest.approx(0, abs=1e-14)
    eig = m.top_eigenvalues(h, k=d).numpy()  # M = hᵀh/n has n eigenvalues n/n = 1
    np.testing.assert_allclose(eig, [1.0] * n + [0.0] * (d - n), atol=1e-13)


def test_rank_one_input():
    n, d = 6, 5
    u = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 2.0], dtype=torch.float64)
    h = torch.outer(u, randn(d, seed=7))
    assert m.orthogonality_gap(h).item() == pytest.approx(math.sqrt(1 - 1 / n), rel=1e-12)
    assert m.rank_lower_bound(h).item() == pytest.approx(1, rel=1e-12)
    for name in ["rank_torch", "rank_np", "rank_abs"]:
        assert m.MEASURES[name](h).item() == 1, name
    for tau in [0.25, 0.5, 1.0]:
        assert m.soft_rank(h, tau).item() == 1
    assert m.isometry_gap(h).item() == math.inf
    assert m.mean_abs_cosine(h).item() == pytest.approx(1, rel=1e-12)
    signs = torch.sign(u)
    want = (signs.sum() ** 2 - n) / (n * (n - 1))  # mean over i ≠ j of sign(u_i u_j)
    assert m.mean_cosine(h).item() == pytest.approx(want.item(), rel=1e-12)


def test_diagonal_input_gives_exact_spectral_quantities():
    n, d = 4, 6
    s = np.array([3.0, 0.5, 2.0, 1.0])
    h = torch.zeros(n, d, dtype=torch.float64)
    h[range(n), range(n)] = torch.tensor(s)
    lam = s**2 / n  # eigenvalues (= diagonal) of M = hᵀh/n
    np.testing.assert_allclose(m.top_eigenvalues(h, k=5).numpy(), [*sorted(lam, reverse=True), 0], rtol=1e-14)
    assert m.second_moment_fro2(h).item() == pytest.approx(np.sum(lam**2), rel=1e-14)
    np.testing.assert_allclose(m.regularity_terms(h).numpy(), [np.sum(lam**4), np.sum(lam**3)], rtol=1e-14)
    assert m.rank_lower_bound(h).item() == pytest.approx(np.sum(lam) ** 2 / np.sum(lam**2), rel=1e-14)


def test_regularity_terms_of_a_non_diagonal_2x2():
    # M = [[a, b], [b, c]]: Tr(diag(M²)²) = (a² + b²)² + (b² + c²)², Tr(M³) = a³ + 3ab² + 3b²c + c³
    a, b, c, n = 2.0, 0.7, 1.5, 2
    M = torch.tensor([[a, b], [b, c]], dtype=torch.float64)
    h = math.sqrt(n) * torch.linalg.cholesky(M).mT  # hᵀh/n = L Lᵀ = M
    torch.testing.assert_close(m.second_moment(h), M)
    want = [(a**2 + b**2) ** 2 + (b**2 + c**2) ** 2, a**3 + 3 * a * b**2 + 3 * b**2 * c + c**3]
    np.testing.assert_allclose(m.regularity_terms(h).numpy(), want, rtol=1e-13)


@pytest.mark.parametrize(
    "name,eps", [("rank_torch", EPS32), ("rank_np", EPS64)], ids=["float32", "float64"]
)
def test_relative_rank_thresholds(name: str, eps: float):
    n, d = 12, 20
    t = max(n, d) * eps  # σ_max = 1 below
    h = with_singular_values([1.0, 0.7, 0.2, 4 * t, t / 4], n, d, seed=3)
    assert m.MEASURES[name](h).item() == 4
    # the count is relative: scaling the matrix does not move any σ across the threshold
    assert m.MEASURES[name](1e-6 * h).item() == 4


def test_rank_abs_threshold_is_absolute_after_normalisation():
    # ‖s‖ = 1, so normalising leaves the σ in place; relative to σ_max = 0.5, 1.5e-9 and 0.6e-9 would both count
    s = [0.5, 0.5, 0.5, 0.5, 1.5e-9, 0.6e-9]
    h = with_singular_values(s, 8, 6, seed=4)
    assert m.rank_abs(h).item() == 5
    assert m.rank_abs(1e5 * h).item() == 5
    assert m.rank_abs(h, tol=1e-10).item() == 6
    assert m.rank_np(h).item() == 6  # 0.6e-9 is far above 8·2.2e-16 relative to 0.5


@pytest.mark.parametrize("delta,rel", [(1e-3, 1e-10), (1e-5, 1e-9)])
@pytest.mark.parametrize("n,d", [(6, 9), (10, 10), (40, 50)])
def test_isometry_gap_resolves_small_values(n: int, d: int, delta: float, rel: float):
    # Gram eigenvalues 1 ± δ (pairs) → AM = 1, GM² = 1 − δ² → φ = −½ ln(1 − δ²): 5e-7 and 5e-11 here.
    # ln AM − mean ln λ computed directly is off by ~1e-6 relative at δ = 1e-5.
    lam = torch.tensor([1 + delta, 1 - delta] * (n // 2), dtype=torch.float64)
    h = with_singular_values(lam.sqrt().tolist(), n, d, seed=6)
    want = -0.5 * math.log1p(-(delta**2))
    for scale in [1.0, 1e-3, 1e3]:
        assert m.isometry_gap(scale * h).item() == pytest.approx(want, rel=rel, abs=0)


def test_isometry_gap_keeps_tiny_eigenvalues():
    # one Gram eigenvalue 1e-14 of n = 4 (σ = 1e-7, above the singularity threshold ~1e-15): an eigh of
    # the Gram, or ln(1 + (λ/AM − 1)), would get it wrong by ~1%; rounding in building h moves σ by ~1e-16
    h = with_singular_values([1.0, 1.0, 1.0, 1e-7], 4, 6, seed=8)
    want = math.log((3 + 1e-14) / 4) - 0.25 * math.log(1e-14)
    assert m.isometry_gap(h).item() == pytest.approx(want, rel=1e-8, abs=0)


def test_isometry_gap_is_infinite_for_singular_gram():
    assert torch.all(m.isometry_gap(randn(3, 8, 5)) == math.inf)  # n > d
    centered = randn(8, 20, seed=1)
    centered = centered - centered.mean(0)  # 1ᵀH = 0: rank n − 1, up to roundoff
    assert m.isometry_gap(centered).item() == math.inf
    repeated = randn(4, 20, seed=2).repeat(3, 1)  # 12 samples, 4 distinct
    assert m.isometry_gap(repeated).item() == math.inf


def test_mean_abs_cosine_of_two_samples():
    h = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0]], dtype=torch.float64)
    assert m.mean_abs_cosine(h).item() == pytest.approx(1 / math.sqrt(2), rel=1e-14)
    assert m.mean_cosine(h).item() == pytest.approx(-1 / math.sqrt(2), rel=1e-14)


# ----------------------------------------------------------------------------------------------------------
# 3. properties


@pytest.mark.parametrize("seed", range(4))
def test_lemma1_numerical_rank_bounds_r(seed: int):
    for n, d, k in [(10, 12, 3), (16, 8, 8), (9, 30, 1), (20, 20, 20)]:
        h = randn(n, k, seed=seed) @ randn(k, d, seed=seed + 100)  # rank k
        rank = m.rank_np(h).item()
        r = m.rank_lower_bound(h).item()
        assert rank == k
        assert rank + 1e-9 >= r >= 1 - 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_lemma2_soft_rank_bounds_r_on_bn_outputs(seed: int):
    for n, d in [(16, 16), (8, 32), (32, 8)]:
        h = bn_output(n, d, seed)
        assert m.second_moment(h).trace().item() == pytest.approx(d, rel=1e-12)
        r = m.rank_lower_bound(h).item()
        for tau in [0, 0.25, 0.5, 0.9, 1]:
            assert m.soft_rank(h, tau).item() >= (1 - tau) ** 2 * r - 1e-12


@pytest.mark.parametrize("n,d", SHAPES)
def test_scale_invariance(n: int, d: int):
    h = randn(3, n, d, seed=11)
    for name in SCALE_FREE:
        base = m.MEASURES[name](h)
        for scale in [1e-3, 1e3]:
            torch.testing.assert_close(m.MEASURES[name](scale * h), base, rtol=1e-10, atol=0, msg=name)


def test_homogeneity_of_scale_dependent_metrics():
    h, c = randn(2, 6, 9, seed=12), 3.0
    close = dict(rtol=1e-12, atol=0)
    torch.testing.assert_close(m.top_eigenvalues(c * h), c**2 * m.top_eigenvalues(h), **close)
    torch.testing.assert_close(m.second_moment_fro2(c * h), c**4 * m.second_moment_fro2(h), **close)
    want = m.regularity_terms(h) * torch.tensor([c**8, c**6], dtype=torch.float64)
    torch.testing.assert_close(m.regularity_terms(c * h), want, **close)


def test_transpose_invariance_of_r():
    for n, d in SHAPES:
        h = randn(n, d, seed=13)
        assert m.rank_lower_bound(h.mT).item() == pytest.approx(m.rank_lower_bound(h).item(), rel=1e-12)


@pytest.mark.parametrize("n,d", SHAPES)
def test_soft_rank_at_tau_zero_counts_every_singular_value(n: int, d: int):
    assert m.soft_rank(randn(n, d, seed=14), 0.0).item() == min(n, d)


@pytest.mark.parametrize("n,d", SHAPES)
def test_ranges(n: int, d: int):
    h = randn(5, n, d, seed=15)
    v = m.orthogonality_gap(h)
    assert torch.all((v >= 0) & (v <= math.sqrt(1 - 1 / n) + 1e-12))
    assert torch.all(m.isometry_gap(h) >= 0)
    assert torch.all((m.mean_abs_cosine(h) >= 0) & (m.mean_abs_cosine(h) <= 1))


def test_requires_n_le_d_lists_exactly_the_metrics_that_degenerate():
    h = randn(2, 12, 4, seed=16)  # n > d
    for name, fn in m.MEASURES.items():
        value = fn(h)
        if name in m.REQUIRES_N_LE_D:
            assert torch.all(value == math.inf), name
        else:
            assert torch.all(torch.isfinite(value)), name


# ----------------------------------------------------------------------------------------------------------
# 4. errors and non-finite input


@pytest.mark.parametrize("tau", [-0.1, 1.5, math.nan])
def test_soft_rank_rejects_tau_outside_unit_interval(tau: float):
    with pytest.raises(ConfigError, match="tau") as err:
        m.soft_rank(randn(4, 4), tau)
    assert err.value.key == "tau"


@pytest.mark.parametrize("name", sorted(m.MEASURES))
def test_non_finite_slices_give_nan_and_leave_others_alone(name: str):
    h = randn(4, 6, 8, seed=17)
    h[0, 2, 3] = math.nan
    h[1, 0, 0] = math.inf
    h[2, 5, 7] = -math.inf
    got = m.MEASURES[name](h)
    assert torch.all(torch.isnan(got[:3])), name
    torch.testing.assert_close(got[3], m.MEASURES[name](h[3]), msg=name)


def test_zero_matrix_does_not_raise():
    got = m.measure(torch.zeros(2, 5, 7), list(m.MEASURES))
    for name in ["rank_torch", "rank_np", "rank_abs", "second_moment_fro2", "eig_1", "regularity_num"]:
        assert torch.all(got[name] == 0), name
    for name in [
        "soft_rank",
        "rank_lower_bound",
        "orthogonality_gap",
        "isometry_gap",
        "mean_abs_cosine",
        "mean_cosine",
    ]:
        assert torch.all(torch.isnan(got[name])), name


def test_measure_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        m.measure(randn(4, 4), ["rank_np", "rank_bogus"])
    assert err.value.key == "metrics"
    assert "rank_bogus" in str(err.value)
    assert all(name in str(err.value) for name in m.MEASURES)


def test_measure_expands_vector_metrics_and_forwards_options():
    h = randn(3, 6, 9, seed=18)
    got = m.measure(h, ["top_eigenvalues", "regularity_terms", "soft_rank", "rank_abs"], k=3, tau=0.9)
    keys = {"eig_1", "eig_2", "eig_3", "regularity_num", "regularity_den", "soft_rank", "rank_abs"}
    assert set(got) == keys
    for key, value in got.items():
        assert value.shape == (3,) and value.dtype == torch.float64, key
    eig = m.top_eigenvalues(h, k=3)
    for i in range(3):
        torch.testing.assert_close(got[f"eig_{i + 1}"], eig[:, i])
    torch.testing.assert_close(got["regularity_num"], m.regularity_terms(h)[:, 0])
    torch.testing.assert_close(got["regularity_den"], m.regularity_terms(h)[:, 1])
    torch.testing.assert_close(got["soft_rank"], m.soft_rank(h, 0.9))
    assert set(m.measure(h, "mean_cosine")) == {"mean_cosine"}


def test_top_eigenvalues_rejects_k_below_one():
    with pytest.raises(ConfigError, match="k="):
        m.top_eigenvalues(randn(4, 4), k=0)

"""The chain engine and metrics for the ortho paper's random-matrix figures: the Gaussian-approximation W2 and the
spectral orthogonality gap against numpy float64 oracles and closed forms, the basis inputs, ``norm_input``,
``bn_scale``, the reference chain and ``conjecture_gap``, Gram vs full-W sampler, and config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnexp import metrics
from bnexp.chains import ChainParams, chain_inputs, simulate, states
from bnexp.chains.draws import reference_seed
from bnexp.errors import ConfigError
from bnexp.nn.activations import ACTIVATIONS

INF = math.inf
SHAPES = [(4, 9), (6, 6), (9, 4)]  # (n, d): n < d, n = d, n > d


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def collect(params: ChainParams, seeds, **kw) -> dict[str, np.ndarray]:
    values: dict[str, list] = {}
    for _, vals in simulate(params, seeds, **kw):
        for k, v in vals.items():
            values.setdefault(k, []).append(v)
    return {k: np.array(v) for k, v in values.items()}


# ------------------------------------------------------------------------------------------------ metric oracles
# numpy float64 in the paper's orientation: H = hᵀ is d×n, columns are samples


def np_w2(h: np.ndarray) -> float:
    """Σ_{i=1..n} (σ_i(H/‖H‖_F) − 1/√n)² via the Gaussian W2 formula between N(0, HᵀH/d) and N(0, I/(nd)) rows,
    times d rows: tr A + tr B − 2 tr (A^{1/2} B A^{1/2})^{1/2}, from an eigendecomposition (not an SVD)."""
    H = h.T / np.linalg.norm(h)
    d, n = H.shape
    lam, vec = np.linalg.eigh(H.T @ H / d)
    root = vec @ np.diag(np.sqrt(lam.clip(0))) @ vec.T  # A^{1/2}
    b = np.eye(n) / (n * d)
    inner = np.linalg.eigvalsh(root @ b @ root).clip(0)
    return d * (np.trace(H.T @ H / d) + np.trace(b) - 2 * np.sqrt(inner).sum())


def np_spectral(h: np.ndarray) -> float:
    s = np.linalg.svd(h.T, compute_uv=False)
    return float(np.linalg.norm(s / np.linalg.norm(s) - 1 / np.sqrt(len(s))))


@pytest.mark.parametrize("n,d", SHAPES)
def test_new_metrics_match_numpy_oracles(n, d):
    h = randn(3, n, d, seed=n * d) * randn(1, 1, d, seed=1)  # uneven feature scales
    w2, spec = metrics.w2_gaussian(h), metrics.ortho_gap_spectral(h)
    assert w2.dtype == spec.dtype == torch.float64 and w2.shape == spec.shape == (3,)
    for b in range(3):
        # the oracle's square roots of zero eigenvalues (n > d) carry √eps ≈ 1e-8 of rounding
        np.testing.assert_allclose(w2[b].item(), np_w2(h[b].numpy()), rtol=1e-8 if n <= d else 1e-6, atol=1e-12)
        np.testing.assert_allclose(spec[b].item(), np_spectral(h[b].numpy()), rtol=1e-10, atol=1e-13)
    # registered for the engines, and the closed form 2 − 2‖H‖_*/√n (all n singular values, zeros included)
    assert metrics.MEASURES["w2_gaussian"] is metrics.w2_gaussian
    assert metrics.MEASURES["ortho_gap_spectral"] is metrics.ortho_gap_spectral
    s = torch.linalg.svdvals(h / torch.linalg.matrix_norm(h)[:, None, None])
    torch.testing.assert_close(w2, 2 - 2 * s.sum(-1) / math.sqrt(n))


@pytest.mark.parametrize("n,d", [(4, 9), (5, 5)])
def test_new_metrics_closed_forms(n, d):
    k = min(n, d)
    ortho = 3.0 * torch.eye(n, d, dtype=torch.float64)  # orthogonal samples of equal norms (n ≤ d)
    assert metrics.w2_gaussian(ortho).item() == pytest.approx(0.0, abs=1e-14)
    assert metrics.ortho_gap_spectral(ortho).item() == pytest.approx(0.0, abs=1e-14)
    rank_one = torch.outer(randn(n, seed=2), randn(d, seed=3))
    assert metrics.w2_gaussian(rank_one).item() == pytest.approx(2 - 2 / math.sqrt(n), rel=1e-12)
    assert metrics.ortho_gap_spectral(rank_one).item() == pytest.approx(math.sqrt(2 - 2 / math.sqrt(k)), rel=1e-12)
    # diagonal: singular values (3, 1) with n = 2: W2 = (3/√10 − 1/√2)² + (1/√10 − 1/√2)²
    diag = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    want = (3 / math.sqrt(10) - 1 / math.sqrt(2)) ** 2 + (1 / math.sqrt(10) - 1 / math.sqrt(2)) ** 2
    assert metrics.w2_gaussian(diag).item() == pytest.approx(want, rel=1e-12)
    assert metrics.ortho_gap_spectral(diag).item() == pytest.approx(math.sqrt(want), rel=1e-12)  # k = n = 2


def test_w2_below_n_v_squared_and_ranges():
    """Lemma 2's proof step, deterministic per H: W2_cond² ≤ n·V(H)²; ranges [0, 2 − 2/√n], [0, √(2 − 2/√k)]."""
    for n, d in SHAPES:
        h = randn(200, n, d, seed=7) * randn(200, n, 1, seed=8) ** 3  # spread sample norms: V from ~0 to ~1
        w2, v = metrics.w2_gaussian(h), metrics.orthogonality_gap(h)
        assert torch.all(w2 <= n * v**2 + 1e-12)
        assert torch.all((w2 >= 0) & (w2 <= 2 - 2 / math.sqrt(n) + 1e-12))
        spec = metrics.ortho_gap_spectral(h)
        assert torch.all((spec >= 0) & (spec <= math.sqrt(2 - 2 / math.sqrt(min(n, d))) + 1e-12))


def test_new_metrics_scale_invariant_and_non_finite():
    h = randn(4, 5, 7, seed=9)
    for fn in (metrics.w2_gaussian, metrics.ortho_gap_spectral):
        torch.testing.assert_close(fn(1e-150 * h), fn(h))
        torch.testing.assert_close(fn(1e150 * h), fn(h))
        bad = h.clone()
        bad[0, 1, 2] = math.nan
        bad[1, 0, 0] = math.inf
        got = fn(bad)
        assert torch.isnan(got[:2]).all() and torch.isfinite(got[2:]).all()
        assert torch.isnan(fn(torch.zeros(5, 7))).all()


def test_conjecture_gap_oracle_and_identity_reference():
    n, d = 4, 10
    h = randn(3, n, d, seed=10)
    k = randn(3, n, n, seed=11) / 10
    got = metrics.conjecture_gap(h, k)
    for b in range(3):
        H = h[b].numpy().T
        want = np.linalg.norm(H.T @ H / np.trace(H.T @ H) - k[b].numpy())
        assert got[b].item() == pytest.approx(want, rel=1e-12)
    eye = torch.eye(n, dtype=torch.float64) / n  # K = I/n: L is V of Eq. 2
    torch.testing.assert_close(metrics.conjecture_gap(h, eye), metrics.orthogonality_gap(h))
    torch.testing.assert_close(torch.diagonal(metrics.normalized_gram(h), dim1=-2, dim2=-1).sum(-1),
                               torch.ones(3, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ inputs, scales


def test_basis_inputs_and_norm_input():
    eps = 1e-3
    x, _ = chain_inputs(ChainParams(width=5, batch=3, input="near_collinear", input_noise=eps), 0, 1)
    want = np.array([[1, 0, 0, 0, 0], [1 - eps, eps, 0, 0, 0], [1 - eps, 0, eps, 0, 0]], dtype=float)
    np.testing.assert_array_equal(x.numpy(), want)
    x, _ = chain_inputs(ChainParams(width=5, batch=3, input="spiked", input_noise=1e-6), 0, 1)
    np.testing.assert_array_equal(x.numpy(), np.diag([1.0, 1e-6, 1e-6, 0, 0])[:3])
    x, _ = chain_inputs(ChainParams(width=5, batch=3, input="basis"), 0, 1)
    np.testing.assert_array_equal(x.numpy(), np.eye(3, 5))
    # norm_input=false: H_0 is X itself, so |cos| and V of the input are the paper's
    base = dict(width=32, batch=2, depth=3, input="near_collinear", input_noise=eps, metrics=("mean_abs_cosine",))
    raw = collect(ChainParams(norm_input=False, **base), [0])["mean_abs_cosine"]
    assert raw[0, 0] == pytest.approx((1 - eps) / math.hypot(1 - eps, eps), rel=1e-14)  # 0.9999995
    normed = collect(ChainParams(**base), [0])["mean_abs_cosine"]
    assert normed[0, 0] < 0.8  # BN of the input rescales feature 2 (0, ε) to O(1): a different input
    v = collect(ChainParams(width=32, batch=4, depth=1, input="spiked", input_noise=1e-6, norm_input=False,
                            metrics=("orthogonality_gap",)), [0])["orthogonality_gap"]
    assert v[0, 0] == pytest.approx(math.sqrt(3) / 2, rel=1e-9)


def test_deterministic_inputs_draw_nothing():
    """BN and vanilla chains of ortho/fig1 (different deterministic inputs) see the same W for a seed."""
    _, w1 = chain_inputs(ChainParams(width=8, batch=2, input="near_collinear"), 3, 5)
    _, w2 = chain_inputs(ChainParams(width=8, batch=2, input="basis", norm="none"), 3, 5)
    _, w3 = chain_inputs(ChainParams(width=8, batch=8, input="orthogonal"), 3, 5)
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    torch.testing.assert_close(w1, w3, rtol=0, atol=0)


@pytest.mark.parametrize("act, norm, gamma", [("tanh", "bn_theory", INF), ("relu", "bn_theory", 0.5),
                                              ("tanh_plus_one", "bn_theory", INF), ("sin", "bn_center", INF)])
def test_unit_norm_bn_matches_numpy_oracle(act, norm, gamma):
    """bn_scale=unit_norm: each feature row (paper orientation) divided by its norm over the batch."""
    fn = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0), "sin": np.sin,
          "tanh_plus_one": lambda x: np.tanh(x) + 1}[act]
    p = ChainParams(width=7, batch=4, depth=4, act=act, norm=norm, gamma=gamma, bn_scale="unit_norm",
                    norm_input=False)
    x, w = chain_inputs(p, seed=2, layers=p.depth)
    h = x.numpy().T  # (d, N), not normalised
    for layer, state in states(p, [2]):
        if layer > 0:
            pre = w[layer - 1].numpy() @ fn(h)
            pre = pre if math.isinf(gamma) else h + gamma * pre
            if norm == "bn_center":
                pre = pre - pre.mean(axis=1, keepdims=True)
            h = pre / np.sqrt((pre**2).sum(axis=1, keepdims=True) + p.eps)
            np.testing.assert_allclose(np.linalg.norm(state[0].numpy(), axis=0), 1.0, rtol=1e-9)
        np.testing.assert_allclose(state[0].numpy().T, h, rtol=1e-10, atol=1e-12, err_msg=f"layer {layer}")


def test_unit_norm_is_a_rescale_for_linear_chains():
    kw = dict(width=16, batch=4, depth=20, measure_every=5, metrics=("orthogonality_gap", "w2_gaussian"))
    a = collect(ChainParams(**kw), [1, 2])
    b = collect(ChainParams(bn_scale="unit_norm", **kw), [1, 2])
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, err_msg=key)


def test_tanh_plus_one_is_distinct_from_the_logistic_sigmoid():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    torch.testing.assert_close(ACTIVATIONS["tanh_plus_one"](x), torch.tanh(x) + 1)
    torch.testing.assert_close(ACTIVATIONS["sigmoid"](x), 1 / (1 + torch.exp(-x)))


# ------------------------------------------------------------------------------------------------ reference chain


def test_reference_chain_is_an_independent_chain_from_its_own_stream():
    """K is the mean normalised Gram over layers 1..T of the same recurrence from a fresh Gaussian input, driven by
    the generator seeded with reference_seed(seed); adding it changes nothing in the replicate's own chain."""
    kw = dict(width=12, batch=4, depth=6, act="relu", bn_scale="unit_norm", norm_input=False, sampler="gram")
    p = ChainParams(reference_depth=9, metrics=("conjecture_gap", "reference_gram", "orthogonality_gap"), **kw)
    got = collect(p, [5, 6])
    for r, seed in enumerate([5, 6]):
        ref = ChainParams(depth=9, input="gaussian", **{k: v for k, v in kw.items() if k != "depth"})
        grams = [metrics.normalized_gram(s[0]) for layer, s in states(ref, [reference_seed(seed)]) if layer > 0]
        k = torch.stack(grams).mean(0)
        chain = [s[0] for _, s in states(ChainParams(**kw), [seed])]
        want = [metrics.conjecture_gap(h, k).item() for h in chain]
        np.testing.assert_allclose(got["conjecture_gap"][:, r], want, rtol=1e-10)
        n = 4
        assert got["ref_max_dev"][0, r] == pytest.approx((k - torch.eye(n) / n).abs().max().item(), rel=1e-12)
        off = (k.sum() - k.trace()).item() / (n * (n - 1))
        assert np.allclose(got["ref_mean_offdiag"][:, r], off, rtol=1e-12)  # constant over layers
    # the replicate's own chain is untouched by the reference chain
    plain = collect(ChainParams(metrics=("orthogonality_gap",), **kw), [5, 6])
    np.testing.assert_array_equal(plain["orthogonality_gap"], got["orthogonality_gap"])
    assert reference_seed(5) != reference_seed(6) and reference_seed(5) not in (5, 6)


def test_reference_chain_batch_invariant():
    p = ChainParams(width=16, batch=4, depth=30, act="tanh", bn_scale="unit_norm", norm_input=False,
                    reference_depth=50, measure_every=10, metrics=("conjecture_gap", "reference_gram"))
    alone = collect(p, [3])
    batch = collect(p, [2, 3, 4], threads=2)
    for key in alone:
        np.testing.assert_array_equal(alone[key][:, 0], batch[key][:, 1])


def test_odd_activation_reference_is_near_identity_and_relu_is_not():
    """Appendix F.2 / Fig 6 (d = 64, K from 2000 layers): tanh and sin K ≈ I/n; relu has K off-diagonal ≈ 0.07."""
    kw = dict(width=64, batch=4, depth=1, bn_scale="unit_norm", norm_input=False, sampler="gram",
              reference_depth=2000, metrics=("reference_gram",))
    for act in ("tanh", "sin"):
        assert collect(ChainParams(act=act, **kw), [0, 1])["ref_max_dev"].max() < 0.01, act
    assert collect(ChainParams(act="relu", **kw), [0, 1])["ref_mean_offdiag"].mean() > 0.03


# ------------------------------------------------------------------------------------------------ samplers


def test_gram_and_full_w_same_orthogonality_plateau():
    """Exact in law: mean V over layers 30–100 (the Fig 2 chain, d = 64, n = 4) agrees within noise."""
    kw = dict(width=64, batch=4, depth=100, burn_in=30, input="spiked", input_noise=1e-6, norm_input=False,
              bn_scale="unit_norm", metrics=("orthogonality_gap", "w2_gaussian"))
    full = collect(ChainParams(**kw), range(12))
    gram = collect(ChainParams(sampler="gram", **kw), range(100, 112))
    for key in full:
        a, b = full[key].mean(0), gram[key].mean(0)  # per-seed means over the layers
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se, (key, a.mean(), b.mean(), se)
        assert abs(a.mean() - b.mean()) < 0.15 * a.mean(), key


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("change, key, words", [
    (dict(bn_scale="unit"), "chain.bn_scale", "unit_norm, unit_variance"),
    (dict(norm_input="no"), "chain.norm_input", "False, True"),
    (dict(input="near_collinear", batch=40), "chain.batch", "N ≤"),
    (dict(input="spiked", batch=33), "chain.batch", "N ≤"),
    (dict(input="basis", batch=64), "chain.batch", "N ≤"),
    (dict(metrics=("conjecture_gap",)), "chain.reference_depth", "reference_depth ≥ 1"),
    (dict(metrics=("reference_gram",), reference_depth=0), "chain.reference_depth", "reference_depth ≥ 1"),
    (dict(reference_depth=-1), "chain.reference_depth", "≥ 0"),
    (dict(metrics=("conjecture_gaps",)), "chain.metrics", "conjecture_gap"),
    (dict(space="M", bn_scale="unit_norm"), "chain.bn_scale", "unit_variance"),
    (dict(space="M", metrics=("conjecture_gap",), reference_depth=5), "chain.metrics", "conjecture_gap"),
])
def test_validation_names_the_key_and_choices(change, key, words):
    with pytest.raises(ConfigError) as err:
        simulate(ChainParams(**change), [0])
    assert err.value.key == key
    assert key in str(err.value) and words in str(err.value)


def test_ortho_experiment_configs_validate():
    from bnexp import config, engines

    for exp in ("ortho_cos", "ortho_gap", "ortho_conjecture"):
        cfg = config.compose("simulate", [f"+exp={exp}"])
        ChainParams.from_cfg(cfg.chain).validate()
        engines.validate(cfg)

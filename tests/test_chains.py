"""bnexp.chains: each recurrence against a numpy float64 oracle (paper orientation d×N, the same W), the RNG
contract, M-space vs H-space, Gram vs full-W sampler, and the papers' lemmas and calibrated checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from bnexp import chains, metrics
from bnexp.chains import ChainParams, chain_inputs, simulate, states
from bnexp.chains.engine import plan_threads
from bnexp.chains.lane import bn_theory_
from bnexp.chains.params import OPTIONAL_KEYS
from bnexp.errors import ConfigError

INF = math.inf


def collect(params: ChainParams, seeds, **kw) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The measured layers and {metric: (layers, R)} from simulate."""
    layers, values = [], {}
    for layer, vals in simulate(params, seeds, **kw):
        layers.append(layer)
        for k, v in vals.items():
            values.setdefault(k, []).append(v)
    return np.array(layers), {k: np.array(v) for k, v in values.items()}


# ------------------------------------------------------------------------------------------------ numpy oracle

ACT = {"linear": lambda x: x, "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "sin": np.sin,
       "sigmoid": lambda x: 1 / (1 + np.exp(-x))}


def np_norm(h: np.ndarray, p: ChainParams) -> np.ndarray:
    """Paper orientation: h (d, N); statistics over the samples (axis 1)."""
    if p.norm == "bn_theory":
        return h / np.sqrt((h**2).mean(axis=1, keepdims=True) + p.eps)
    if p.norm == "bn_center":
        mu = h.mean(axis=1, keepdims=True)
        return (h - mu) / np.sqrt(((h - mu) ** 2).mean(axis=1, keepdims=True) + p.eps)
    if p.norm in ("layernorm", "rmsnorm", "groupnorm"):  # per sample (column) over the features, in groups
        groups = p.groups if p.norm == "groupnorm" else 1
        g = h.reshape(groups, h.shape[0] // groups, h.shape[1])
        if p.norm != "rmsnorm":
            g = g - g.mean(axis=1, keepdims=True)
        return (g / np.sqrt((g**2).mean(axis=1, keepdims=True) + p.eps)).reshape(h.shape)
    if p.renormalize:
        target = h.size if p.renorm_to == "dN" else h.shape[0]  # ‖H‖_F² = dN or d
        return h * np.sqrt(target) / np.linalg.norm(h)
    return h


def np_step(h: np.ndarray, w: np.ndarray, p: ChainParams, gamma: float) -> np.ndarray:
    f = ACT[p.act]
    if p.act_order == "after_norm":
        pre = w @ h if math.isinf(gamma) else h + gamma * (w @ h)
        return f(np_norm(pre, p))
    pre = w @ f(h) if math.isinf(gamma) else h + gamma * (w @ f(h))
    return np_norm(pre, p)


STEP_CASES = [
    dict(norm="bn_theory", act="linear", gamma=0.3),
    dict(norm="bn_theory", act="linear", gamma=INF),
    dict(norm="bn_theory", act="tanh", gamma=0.7),
    dict(norm="bn_theory", act="relu", gamma=INF, eps=1e-12),
    dict(norm="bn_center", act="relu", gamma=INF, act_order="after_norm"),
    dict(norm="bn_center", act="sin", gamma=1.0),
    dict(norm="none", act="linear", gamma=0.5),
    dict(norm="none", act="tanh", gamma=INF, act_order="after_norm"),
    dict(norm="none", act="tanh", gamma=0.2, renorm_to="d"),
    dict(norm="none", act="sigmoid", gamma=INF, renormalize=False),
    dict(norm="bn_theory", act="linear", gamma=1.0, weights="unif", input="collinear"),
    dict(norm="bn_theory", act="tanh", gamma=INF, input="orthogonal"),
    dict(norm="layernorm", act="relu", gamma=INF, act_order="after_norm"),
    dict(norm="rmsnorm", act="tanh", gamma=0.5),
    dict(norm="groupnorm", act="linear", gamma=INF, groups=3),
]


@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_steps_match_numpy_oracle(case):
    n = 6 if case.get("input") == "orthogonal" else 7
    p = ChainParams(width=6, batch=n, depth=4, **case)
    x, w = chain_inputs(p, seed=11, layers=p.depth)
    h = np_norm(x.numpy().T, p)  # paper orientation (d, N)
    for layer, state in states(p, [11]):
        if layer > 0:
            h = np_step(h, w[layer - 1].numpy(), p, p.gamma)
        np.testing.assert_allclose(state[0].numpy().T, h, rtol=1e-10, atol=1e-12, err_msg=f"layer {layer}")


@pytest.mark.parametrize("act, gamma", [("linear", 0.5), ("tanh", INF)])
def test_gram_step_matches_oracle(act, gamma):
    """sampler=gram: W F(H) is replaced by (Rᵀ Z)ᵀ (paper orientation) with F(H)ᵀ = QR, Z the drawn (k, d)."""
    p = ChainParams(width=9, batch=4, depth=3, sampler="gram", act=act, gamma=gamma)
    x, z = chain_inputs(p, seed=5, layers=p.depth)
    assert z.shape == (3, 4, 9)  # (layers, min(N, d), d)
    h = np_norm(x.numpy().T, p)
    for layer, state in states(p, [5]):
        if layer > 0:
            g = ACT[act](h)  # (d, N): code G = gᵀ, QR of Gᵀ = g
            r = np.linalg.qr(g, mode="r")  # (k, N), gᵀg = rᵀr
            wf = (r.T @ z[layer - 1].numpy()).T  # (d, N) =law W F(H)
            h = np_norm(wf if math.isinf(gamma) else h + gamma * wf, p)
        np.testing.assert_allclose(state[0].numpy().T, h, rtol=1e-9, atol=1e-11, err_msg=f"layer {layer}")


def test_gram_square_root_has_the_right_covariance():
    """The QR factor reproduces the conditional law: Rᵀ R = G Gᵀ (code orientation), for N < d and N > d."""
    for n, d in [(4, 9), (9, 4)]:
        g = torch.randn(2, n, d, dtype=torch.float64)
        r = torch.linalg.qr(g.mT, mode="r").R
        torch.testing.assert_close(r.mT @ r, g @ g.mT)


def test_m_space_matches_h_space():
    """Same X and W: M-space M_ℓ equals M(H_ℓ) of the H chain (linear BN and vanilla chains, N = d)."""
    for extra in (dict(norm="bn_theory", gamma=0.4), dict(norm="bn_theory", gamma=INF),
                  dict(norm="none", gamma=1.0), dict(norm="none", gamma=INF, renorm_to="d")):
        ph = ChainParams(width=7, depth=6, **extra)
        pm = ChainParams(width=7, depth=6, space="M", **extra)
        for (_, h), (_, m) in zip(states(ph, [3, 4]), states(pm, [3, 4])):
            torch.testing.assert_close(m, h.mT @ h / 7, rtol=1e-8, atol=1e-10)
    # and the metrics of the M-space stand-in equal those of H-space, through simulate
    names = ("soft_rank", "rank_lower_bound", "second_moment_fro2", "regularity_terms", "top_eigenvalues",
             "orthogonality_gap")
    kw = dict(width=8, depth=40, gamma=1.0, measure_every=10, metrics=names, top_k=3)
    _, vh = collect(ChainParams(**kw), [0, 1])
    _, vm = collect(ChainParams(space="M", **kw), [0, 1])
    for key in vh:
        np.testing.assert_allclose(vm[key], vh[key], rtol=1e-6, atol=1e-8, err_msg=key)


# ------------------------------------------------------------------------------------------------ RNG contract


def test_reproducible_and_independent_of_batching_and_threads():
    p = ChainParams(width=64, batch=128, depth=40, gamma=1.0, measure_every=5, metrics=("rank_lower_bound",))
    # width 64 with 128 samples: B = 32 layers per block (2 blocks) and, with 2 threads, 2 lanes
    assert plan_threads(p, 4, torch.device("cpu"), 2).lanes == 2
    _, one = collect(p, [7], threads=1)
    _, again = collect(p, [7], threads=1)
    _, batch = collect(p, [5, 6, 7, 8], threads=2)
    np.testing.assert_array_equal(one["rank_lower_bound"], again["rank_lower_bound"])
    np.testing.assert_array_equal(one["rank_lower_bound"][:, 0], batch["rank_lower_bound"][:, 2])
    assert not np.array_equal(batch["rank_lower_bound"][:, 0], batch["rank_lower_bound"][:, 1])


def test_simulate_equals_metrics_of_states():
    """The multi-threaded, multi-lane engine yields exactly the metrics of the serial states at measured layers."""
    p = ChainParams(width=8, batch=128, depth=30, gamma=0.5, burn_in=3, measure_every=4,
                    metrics=("soft_rank", "orthogonality_gap"))
    seeds = [1, 2, 3]
    layers, got = collect(p, seeds, threads=2)
    np.testing.assert_array_equal(layers, np.arange(4, 31, 4))
    want = {layer: metrics.measure(s, p.metrics) for layer, s in states(p, seeds) if layer in set(layers)}
    for i, layer in enumerate(layers):
        for key in got:
            np.testing.assert_array_equal(got[key][i], want[layer][key].numpy())


def test_same_weights_whatever_the_norm_and_dtype():
    """The engine consumes the same X, W_1, W_2, ... of a seed whatever the norm, activation order or depth
    (each variant matches the numpy oracle driven by one set of draws), and in float32 as in float64."""
    base = dict(width=5, depth=20, gamma=1.0)
    x0, w0 = chain_inputs(ChainParams(**base), 9, 20)
    for extra in (dict(norm="none"), dict(norm="bn_theory"), dict(norm="bn_center", act="relu"),
                  dict(act_order="after_norm", act="tanh"), dict(depth=3)):
        p = ChainParams(**{**base, **extra})
        h = np_norm(x0.numpy().T, p)
        for layer, state in states(p, [9]):
            if layer > 0:
                h = np_step(h, w0[layer - 1].numpy(), p, 1.0)
            np.testing.assert_allclose(state[0].numpy().T, h, rtol=1e-9)
    # float32 chains draw the same float32 weights: for the first layers (before rounding differences are
    # amplified by the chain) their states equal the float64 chain's to float32 rounding; other weights
    # would differ at O(1)
    short = {**base, "depth": 6}
    f64 = [s[0].numpy() for _, s in states(ChainParams(**short), [9])]
    f32 = [s[0].numpy() for _, s in states(ChainParams(**short, dtype="float32"), [9])]
    np.testing.assert_allclose(np.array(f32), np.array(f64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("act", ["linear", "tanh"])
def test_gamma_batching_equals_separate_runs(act):
    p = ChainParams(width=12, depth=30, act=act, measure_every=10, metrics=("rank_lower_bound", "soft_rank"))
    gammas = [0.1, INF, 1.0]
    _, batched = collect(p, [4, 4, 4], gammas=gammas)
    for i, g in enumerate(gammas):
        _, alone = collect(ChainParams(**{**p.__dict__, "gamma": g}), [4])
        for key in alone:
            np.testing.assert_array_equal(batched[key][:, i], alone[key][:, 0])


def test_float32_chain_has_the_float64_plateau():
    """The dtype decision for rank/fig3a: float32 rounding does not move the ergodic mean of rank_{1/2} or r
    (d = 16, γ ∈ {1, ∞}, the same weights in both dtypes)."""
    kw = dict(width=16, depth=2000, burn_in=200, measure_every=10, metrics=("soft_rank", "rank_lower_bound"))
    seeds, gammas = [0, 1, 2, 0, 1, 2], [1.0] * 3 + [INF] * 3
    _, f64 = collect(ChainParams(**kw), seeds, gammas=gammas)
    _, f32 = collect(ChainParams(dtype="float32", **kw), seeds, gammas=gammas)
    for key in f64:
        a, b = f64[key].mean(0), f32[key].mean(0)  # per-chain ergodic means
        np.testing.assert_allclose(b.mean(), a.mean(), rtol=0.05, err_msg=key)


def test_gram_and_full_w_reach_the_same_plateau():
    """Exact in law, so bulk statistics agree within noise (d = 32, N = 8, BN linear, γ = ∞)."""
    names = ("orthogonality_gap", "rank_lower_bound")
    kw = dict(width=32, batch=8, depth=600, burn_in=100, measure_every=5, metrics=names)
    seeds = range(8)
    _, full = collect(ChainParams(**kw), seeds)
    _, gram = collect(ChainParams(sampler="gram", **kw), [s + 100 for s in seeds])
    for key in names:
        a, b = full[key].mean(0), gram[key].mean(0)  # per-seed ergodic means
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se + 1e-3, (key, a.mean(), b.mean(), se)
        assert abs(a.mean() - b.mean()) < 0.1 * a.mean(), key


# ------------------------------------------------------------------------------------------------ spec checks


def test_vanilla_collapses_and_bn_keeps_rank():
    """000 Fig 2 / Lemma 3 (d = 32, linear, γ = ∞, 10 seeds, depth 200): vanilla r < 1.2, BN rank_{1/2} > √d."""
    kw = dict(width=32, depth=200, gamma=INF, weights="unif", measure_every=50,
              metrics=("rank_lower_bound", "soft_rank"))
    _, van = collect(ChainParams(norm="none", **kw), range(10))
    _, bn = collect(ChainParams(norm="bn_theory", **kw), range(10))
    assert van["rank_lower_bound"][-1].mean() < 1.2
    assert bn["soft_rank"][1:].mean() > math.sqrt(32)
    assert bn["soft_rank"][-1].mean() > math.sqrt(32)


def test_residual_vanilla_collapses():
    """Lemma 3 with skips (γ = 1, d = 32): the renormalised vanilla r(H̃) → 1 (≈ 1.01 at L = 200)."""
    p = ChainParams(width=32, depth=200, gamma=1.0, norm="none", measure_every=200, metrics=("rank_lower_bound",))
    _, v = collect(p, range(10))
    assert v["rank_lower_bound"][-1].mean() < 1.2


def test_full_rank_for_small_batch():
    """Rank paper §3.1 remark: d = 64, N = 8, BN linear chain, 1000 layers: rank_{1/2} = N at every layer."""
    p = ChainParams(width=64, batch=8, depth=1000, gamma=INF, metrics=("soft_rank",))
    _, v = collect(p, [0])
    assert v["soft_rank"].min() == 8


def test_symmetry_of_the_invariant_law():
    """Lemma 4: ergodic mean of off-diagonal M_ij over 5000 layers ≈ 0 (d = 8, γ = ∞; measured 0.018)."""
    p = ChainParams(width=8, depth=5000, gamma=INF)
    total = torch.zeros(8, 8, dtype=torch.float64)
    for layer, h in states(p, [2]):
        if layer > 0:
            total += h[0].mT @ h[0] / 8
    mean = total / p.depth
    off = mean - torch.diag(torch.diagonal(mean))
    assert off.abs().max() < 0.05
    torch.testing.assert_close(torch.diagonal(mean), torch.ones(8, dtype=torch.float64))  # BN: diag(M) = 1


def test_lemma7_frobenius_drift():
    """(E_W‖M_+‖_F² − ‖M‖_F²)/γ² ≈ δ_F(M) = 2d² − 2‖M‖_F² − 8 Tr M³ + 8 Tr diag(M²)² (d = 6, γ = 0.01, within
    5%), with the engine's BN on 2·10^4 antithetic (W, −W) pairs of the step BN(H + γ W H)."""
    d, n, gamma, pairs = 6, 6, 0.01, 20_000
    gen = torch.Generator().manual_seed(0)
    h = bn_theory_(torch.randn(1, n, d, generator=gen, dtype=torch.float64), 0.0)  # H ∈ 𝓗
    m = (h.mT @ h / n)[0]
    w = torch.randn(pairs, d, d, generator=gen, dtype=torch.float64)
    fro2 = []
    for sign in (1.0, -1.0):
        h_plus = bn_theory_(h + sign * gamma * h @ w.mT, 0.0)  # (pairs, n, d)
        fro2.append(torch.linalg.matrix_norm(h_plus.mT @ h_plus / n) ** 2)
    drift = ((fro2[0] + fro2[1]) / 2).mean() - torch.linalg.matrix_norm(m) ** 2
    m2 = m @ m
    delta = 2 * d**2 - 2 * (m**2).sum() - 8 * torch.trace(m2 @ m) + 8 * (torch.diagonal(m2) ** 2).sum()
    assert abs(drift / gamma**2 / delta - 1) < 0.05, (drift / gamma**2, delta)


def test_collinear_input_h_space():
    """000 Fig 3b (H-space, d = N = 50, effective γ = 1): λ2(0)/λ1(0) < 1e-8; at ℓ = 20 λ1 < 0.6d and λ2 > 1;
    Σλ = d for ℓ ≥ 1; at ℓ = 100 at least d/2 eigenvalues < 1e-3."""
    p = ChainParams(width=50, depth=100, gamma=1.0, input="collinear", metrics=("top_eigenvalues",), top_k=50)
    _, v = collect(p, [0])
    lam = np.stack([v[f"eig_{i}"][:, 0] for i in range(1, 51)], axis=1)  # (layers, 50)
    assert lam[0, 1] / lam[0, 0] < 1e-8
    assert lam[20, 0] < 0.6 * 50 and lam[20, 1] > 1
    np.testing.assert_allclose(lam[1:].sum(1), 50, atol=1e-8)
    assert (lam[100] < 1e-3).sum() >= 25


# ------------------------------------------------------------------------------------------------ bad input, run


def test_per_sample_norms_equal_torch_functional():
    """The chain's in-place per-sample norms against torch.nn.functional (no affine part), float64."""
    from bnexp.chains.lane import layernorm_, rmsnorm_

    h = torch.randn(3, 5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    flat = h.reshape(-1, 12)
    expect = {"layernorm": torch.nn.functional.layer_norm(flat, (12,), eps=1e-12),
              "rmsnorm": torch.nn.functional.rms_norm(flat, (12,), eps=1e-12),
              "groupnorm": torch.nn.functional.group_norm(flat, 4, eps=1e-12)}
    got = {"layernorm": layernorm_(h.clone(), 1e-12), "rmsnorm": rmsnorm_(h.clone(), 1e-12),
           "groupnorm": layernorm_(h.clone(), 1e-12, groups=4)}
    for name, value in got.items():
        torch.testing.assert_close(value.reshape(-1, 12), expect[name], rtol=1e-12, atol=1e-12, msg=name)


def test_per_sample_norms_collapse_a_linear_chain():
    """A per-sample norm leaves the product of random matrices in place: a linear chain with LayerNorm loses its
    rank like the vanilla one, where BN keeps rank_1/2 above √d (measured, beyond the papers)."""
    p = ChainParams(width=16, batch=16, depth=600, norm="layernorm", measure_every=600,
                    metrics=("rank_lower_bound", "soft_rank"))
    _, values = collect(p, [0, 1])
    assert values["rank_lower_bound"][-1].max() < 1.5
    _, bn = collect(dataclasses.replace(p, norm="bn_theory"), [0, 1])
    assert bn["soft_rank"][-1].min() >= math.sqrt(16)


@pytest.mark.parametrize("change, key", [
    (dict(width=0), "chain.width"), (dict(batch=0), "chain.batch"), (dict(depth=0), "chain.depth"),
    (dict(tau=1.5), "chain.tau"), (dict(burn_in=-1), "chain.burn_in"), (dict(burn_in=2000), "chain.burn_in"),
    (dict(measure_every=0), "chain.measure_every"), (dict(norm="bn_foo"), "chain.norm"),
    (dict(act="gelu"), "chain.act"), (dict(act_order="pre"), "chain.act_order"),
    (dict(weights="ortho"), "chain.weights"),
    (dict(input="images"), "chain.input"), (dict(space="W"), "chain.space"), (dict(sampler="qr"), "chain.sampler"),
    (dict(dtype="float16"), "chain.dtype"), (dict(metrics=("soft_rank", "rank_foo")), "chain.metrics"),
    (dict(gamma=-1.0), "chain.gamma"), (dict(gamma=float("nan")), "chain.gamma"),
    (dict(renorm_to="1"), "chain.renorm_to"),
    (dict(space="M", act="tanh"), "chain.space"), (dict(space="M", norm="bn_center"), "chain.space"),
    (dict(space="M", norm="layernorm"), "chain.space"), (dict(norm="groupnorm", groups=5), "chain.groups"),
    (dict(space="M", batch=8), "chain.batch"), (dict(space="M", metrics=("mean_cosine",)), "chain.metrics"),
    (dict(sampler="gram", weights="unif"), "chain.sampler"), (dict(input="orthogonal", batch=8), "chain.batch"),
    (dict(batch=64, metrics=("isometry_gap",)), "chain.batch"),
    (dict(depth=5, burn_in=3, measure_every=10), "chain.measure_every"),
    (dict(dtype="float32", metrics=("soft_rank", "rank_np")), "chain.dtype"),
    (dict(dtype="float32", metrics=("rank_abs",)), "chain.dtype"),
])
def test_validation_names_the_key(change, key):
    p = ChainParams(**change)
    with pytest.raises(ConfigError) as err:
        simulate(p, [0])  # raises at the call, before any work
    assert err.value.key == key
    assert key in str(err.value)
    if key == "chain.norm":
        assert "bn_center, bn_theory, groupnorm, layernorm, none, rmsnorm" in str(err.value)
    if change.get("metrics") == ("isometry_gap",):
        assert "isometry_gap" in str(err.value)
    if key == "chain.dtype" and "metrics" in change:  # names both keys, the metric and the fix
        numerical = next(m for m in change["metrics"] if m.startswith("rank_"))
        assert "float32" in str(err.value) and "chain.metrics" in str(err.value) and numerical in str(err.value)
        assert "chain.dtype=float64" in str(err.value)


def test_float32_refuses_only_the_float64_resolution_ranks():
    """rank_np and rank_abs read float32 rounding (≈ 1e-7 of σ_max) as rank: a rank-4 H (d = N = 64) rounded to
    float32 has rank_np 64 and rank_abs far above 4, so the chain refuses them with dtype=float32; rank_1/2, r and
    rank_torch (float32 by definition) stay allowed."""
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(64, 4, generator=gen, dtype=torch.float64) @ torch.randn(4, 64, generator=gen, dtype=torch.float64)
    assert np.linalg.matrix_rank(h.numpy()) == 4
    assert metrics.rank_np(h).item() == 4 and metrics.rank_abs(h).item() == 4
    rounded = h.to(torch.float32).to(torch.float64)
    assert metrics.rank_np(rounded).item() == 64 and metrics.rank_abs(rounded).item() > 32
    assert metrics.soft_rank(rounded).item() == metrics.soft_rank(h).item()
    ChainParams(dtype="float32", metrics=("soft_rank", "rank_lower_bound", "rank_torch")).validate()
    ChainParams(dtype="float64", metrics=("rank_np", "rank_abs")).validate()


def test_from_cfg_reads_every_key_and_rejects_unknown_ones():
    from bnexp import config

    cfg = config.compose("simulate", ["chain.width=12", "chain.gamma=0.5", "chain.metrics=[soft_rank]"])
    p = ChainParams.from_cfg(cfg.chain).validate()
    assert (p.width, p.gamma, p.metrics, p.n) == (12, 0.5, ("soft_rank",), 12)
    # every key is in simulate.yaml but the optional ones, read with defaults
    assert set(cfg.chain) == {f.name for f in dataclasses.fields(ChainParams)} - OPTIONAL_KEYS
    with pytest.raises(ConfigError, match=r"chain\.widht"):
        ChainParams.from_cfg({"widht": 3})
    with pytest.raises(ConfigError, match=r"runtime\.threads"):
        simulate(ChainParams(), [0], threads=0)
    with pytest.raises(ConfigError, match="gammas"):
        simulate(ChainParams(), [0, 1], gammas=[1.0])


def test_overflow_is_recorded_not_raised():
    p = ChainParams(width=32, depth=500, gamma=INF, norm="none", renormalize=False, measure_every=100,
                    metrics=("rank_lower_bound", "top_eigenvalues"), top_k=1)
    layers, v = collect(p, [0, 1])
    assert layers[-1] == 500
    assert not np.isfinite(v["eig_1"][-1]).any()  # H overflowed (float64, ~420 layers at d = 32)
    assert not np.isfinite(v["rank_lower_bound"][-1]).any()
    assert np.isfinite(v["rank_lower_bound"][0]).all()


class FakeWriter:
    def __init__(self):
        self.calls: list[list[tuple]] = []
        self.notes: dict = {}

    def append(self, rows):
        self.calls.append(list(rows))

    def note(self, **fields):
        self.notes.update(fields)


@pytest.mark.parametrize("width, replicates", [(256, 1), (512, 1), (64, 30)])
def test_cpu_plans_never_use_blas_threads(width, replicates):
    """One BLAS thread while a chain runs on the CPU, whatever the plan: BLAS threads lose 3–18× when another
    process holds a core (docs/performance.md, "Threads"); extra cores go to worker threads (draws beside steps)."""
    p = ChainParams(width=width, depth=2, measure_every=1, metrics=("soft_rank",))
    plan = plan_threads(p, replicates, torch.device("cpu"), "auto")
    assert "1 BLAS thread" in plan.describe()
    seen = [torch.get_num_threads() for _ in simulate(p, list(range(replicates)), threads=2)]
    assert seen and set(seen) == {1}


def test_run_records_the_thread_plan():
    writer = FakeWriter()
    chains.run({"seed": 0, "n_seeds": 1, "runtime": {"threads": "auto", "device": "cpu"},
                "chain": {"width": 256, "depth": 2, "metrics": ["soft_rank"]}}, writer)
    assert writer.notes["threads"] == "auto"
    assert writer.notes["thread_plan"].endswith("1 BLAS thread")


def test_run_writes_rows_in_chunks(monkeypatch):
    monkeypatch.setattr(chains.engine, "_FLUSH_LAYERS", 4)
    cfg = {"seed": 3, "n_seeds": 2, "runtime": {"threads": "auto", "progress": False, "device": "auto"},
           "chain": {"width": 6, "depth": 20, "measure_every": 2, "metrics": ["soft_rank", "top_eigenvalues"],
                     "top_k": 2}}
    writer = FakeWriter()
    chains.run(cfg, writer)
    assert len(writer.calls) == 3  # 11 measured layers, flushed every 4
    rows = [r for call in writer.calls for r in call]
    assert len(rows) == 11 * 3 * 2
    for seed, step, layer, metric, value in rows:
        assert seed in (3, 4) and isinstance(step, int) and 0 <= step <= 20 and step % 2 == 0
        assert layer is None and metric in ("soft_rank", "eig_1", "eig_2") and isinstance(value, float)
    # the same numbers as simulate
    _, v = collect(ChainParams.from_cfg(cfg["chain"]), [3, 4])
    last = {(s, m): val for s, st, _, m, val in rows if st == 20}
    assert last[(4, "eig_2")] == v["eig_2"][-1, 1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_and_agrees_in_law():
    kw = dict(width=32, depth=300, burn_in=50, measure_every=10, metrics=("rank_lower_bound",))
    _, gpu = collect(ChainParams(**kw), range(8), device="cuda")
    _, cpu = collect(ChainParams(**kw), range(8))
    assert abs(gpu["rank_lower_bound"].mean() - cpu["rank_lower_bound"].mean()) < 0.1 * cpu["rank_lower_bound"].mean()

"""model=attention (pure self-attention stacks) and the token residual metric: shapes, forward passes against a
numpy float64 composition (heads, skip, no skip, LayerNorm), validation, the engine's rows (vmapped seeds = the
per-seed loop), and ``token_residual`` against numpy, closed forms and its minimising property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnexp import config, metrics, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MODELS, build_model, init_weights
from bnexp.nn.attention import SelfAttentionNet


def _x(n: int = 7, d: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _model(seed: int = 0, **kwargs) -> SelfAttentionNet:
    torch.manual_seed(seed)
    options = {"d_in": 12, "width": 8, "depth": 3, "d_out": 5, **kwargs}
    model = build_model("attention", **options).double()
    init_weights(model, "xavier_normal", generator=torch.Generator().manual_seed(seed))
    return model


# ------------------------------------------------------------------------------------------------ the model


def _softmax_rows(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _layer_norm(h: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Each token (row) centred and scaled over its features, γ = 1, β = 0."""
    mu, var = h.mean(axis=1, keepdims=True), h.var(axis=1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps)


def _numpy_forward(model: SelfAttentionNet, x: np.ndarray, heads: int, skip: bool, layer_norm: bool = False):
    """The stack written from its definition in float64 numpy (weights W = Linear.weightᵀ, row orientation):
    X_0 = x W_in; per layer P_h = softmax(X W_Q,h (X W_K,h)ᵀ/√d_h), SA = [P_h X W_V,h]_h W_O, X ← norm(X + SA)
    or norm(SA). Returns (logits, [(SA_ℓ, X_ℓ+1)])."""
    w = [m.weight.detach().numpy().T for m in model.weight_layers()]  # (in, out)
    h, out = x @ w[0], []
    for layer in range(len(model.layers)):
        wq, wk, wv, wo = w[1 + 4 * layer : 5 + 4 * layer]
        d = h.shape[1]
        dh = d // heads
        cols = []
        for head in range(heads):
            s = slice(head * dh, (head + 1) * dh)
            p = _softmax_rows((h @ wq[:, s]) @ (h @ wk[:, s]).T / math.sqrt(dh))
            cols.append(p @ (h @ wv[:, s]))
        sa = np.concatenate(cols, axis=1) @ wo
        h = h + sa if skip else sa
        h = _layer_norm(h) if layer_norm else h
        out.append((sa, h))
    return h @ w[-1], out


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("skip", [False, True])
def test_forward_is_the_numpy_composition(heads, skip):
    model = _model(heads=heads, skip=skip, seed=heads)
    x = _x(seed=heads)
    logits, layers = model.forward_features(x)
    want_logits, want = _numpy_forward(model, x.numpy(), heads, skip)
    np.testing.assert_allclose(logits.detach().numpy(), want_logits, rtol=1e-10, atol=1e-12)
    for got, (sa, h) in zip(layers, want):
        np.testing.assert_allclose(got["pre"].detach().numpy(), sa, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got["post"].detach().numpy(), h, rtol=1e-10, atol=1e-12)
        assert got["norm"] is got["post"]


def test_layernorm_after_each_layer():
    for skip in (False, True):
        model = _model(heads=2, skip=skip, norm="layernorm")
        x = _x()
        logits, layers = model.forward_features(x)
        want_logits, want = _numpy_forward(model, x.numpy(), 2, skip, layer_norm=True)
        np.testing.assert_allclose(logits.detach().numpy(), want_logits, rtol=1e-9, atol=1e-11)
        for got, (_, h) in zip(layers, want):
            np.testing.assert_allclose(got["post"].detach().numpy(), h, rtol=1e-9, atol=1e-11)


def test_shapes_weight_layers_and_attention_matrices():
    model = _model(heads=2)
    x = _x(9)
    logits, layers = model.forward_features(x)
    assert logits.shape == model(x).shape == (9, 5)  # one logit row per token
    assert len(layers) == 3 and all(t.shape == (9, 8) for layer in layers for t in layer.values())
    shapes = [(m.in_features, m.out_features) for m in model.weight_layers()]
    assert shapes == [(12, 8)] + [(8, 8)] * 12 + [(8, 5)]  # fc_in, (W_Q, W_K, W_V, W_O) × 3, readout
    assert model.weight_layers()[1 + 4 * 2 + 2] is model.layers[2].v
    maps = model.attention(x)
    assert len(maps) == 3 and all(p.shape == (2, 9, 9) for p in maps)
    for p in maps:  # row-stochastic
        assert torch.all(p >= 0)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, 9, dtype=torch.float64))
    headless = build_model("attention", d_in=12, width=8, depth=3).double()
    assert headless(x).shape == (9, 8) and len(headless.weight_layers()) == 13
    assert MODELS["attention"] is SelfAttentionNet


def test_inputs_with_more_dims_are_flattened_per_token():
    model = _model()
    x = _x(6, 12)
    torch.testing.assert_close(model(x.reshape(6, 3, 2, 2)), model(x), rtol=0, atol=0)


def test_skip_keeps_the_tokens_apart_and_pure_attention_collapses():
    """The property the figure measures, on one small stack: pure attention drives the residual to ~1e-16 within a
    few layers, the skip connections keep it of order one (default init)."""
    torch.manual_seed(0)
    x = _x(16, 16, seed=3)
    residual = {}
    for skip in (False, True):
        model = build_model("attention", d_in=16, width=16, depth=6, skip=skip).double()
        init_weights(model, "torch_default", generator=torch.Generator().manual_seed(1))
        residual[skip] = metrics.token_residual(model.forward_features(x)[1][-1]["post"]).item()
    assert residual[False] < 1e-12 < 0.3 < residual[True]


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"heads": 3}, "model.heads"), ({"heads": 0}, "model.heads"), ({"skip": "yes"}, "model.skip"),
    ({"bias": 1}, "model.bias"), ({"act": "relu"}, "act.name"), ({"depth": 0}, "model.depth"),
    ({"width": 0}, "model.width"), ({"d_out": 0}, "model.d_out"), ({"norm": "bn_foo"}, "norm.name"),
])
def test_bad_options_raise_config_errors_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        SelfAttentionNet(**{"d_in": 4, "width": 8, "depth": 2, **kwargs})
    assert err.value.key == key
    if key == "model.heads" and kwargs["heads"] == 3:
        assert "must divide model.width = 8" in str(err.value)
    if key == "act.name":
        assert "linear" in str(err.value)


# ------------------------------------------------------------------------------------------------ the engine

SMALL = ["+exp=beyond_attention", "model.depth=3", "model.width=8", "data.dim=6", "data.n_train=10",
         "data.n_test=10", "data.batch_size=10", "runtime.progress=false"]


def test_engine_rows_per_layer_and_vmapped_seeds_equal_the_loop():
    rows = {}
    for batch in ("true", "false"):
        cfg = config.compose("train", [*SMALL, "n_seeds=3", "norm=layernorm", "model.skip=true",
                                       f"runtime.batch_seeds={batch}"])
        train.validate(cfg)
        writer = results.MemoryWriter()
        train.run(cfg, writer)
        rows[batch] = writer.rows
    got = [r for r in rows["true"] if r[3] == "token_residual"]
    assert sorted({r[2] for r in got}) == [-1, 0, 1, 2] and {r[0] for r in got} == {0, 1, 2}
    assert len(rows["true"]) == len(rows["false"])
    for a, b in zip(rows["true"], rows["false"]):
        assert a[:4] == b[:4] and a[4] == pytest.approx(b[4], rel=1e-9, abs=1e-12)


def test_experiment_grid_is_the_four_variants_at_two_scales():
    grid = config.experiment_grid("beyond_attention")
    assert grid == {"model.skip": ["false", "true"], "norm": ["none", "layernorm"],
                    "init": ["torch_default", "xavier_normal"]}


# ------------------------------------------------------------------------------------------------ the metric


def _residual_np(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - x.mean(axis=0)) / np.linalg.norm(x))


@pytest.mark.parametrize(("n", "d"), [(5, 9), (7, 7), (12, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_token_residual_matches_numpy_batched(n, d, dtype):
    h = (torch.randn(3, 2, n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64) + 0.7).to(dtype)
    got = metrics.token_residual(h)
    assert got.shape == (3, 2) and got.dtype == torch.float64
    for i in range(3):
        for j in range(2):
            assert got[i, j].item() == pytest.approx(_residual_np(h[i, j].double().numpy()), rel=1e-12)
    assert metrics.MEASURES["token_residual"] is metrics.token_residual


def test_token_residual_closed_forms():
    v = np.array([0.3, -1.2, 2.0, 0.5])
    equal = torch.tensor(np.tile(v, (6, 1)))  # every token the same: rank one of the form 1 xᵀ
    assert metrics.token_residual(equal).item() < 1e-15
    u = np.array([1.0, 2.0, -0.5, 3.0, 0.0, 1.5])
    rank_one = torch.tensor(np.outer(u, v))  # X = u vᵀ: X − 1x̄ᵀ = (u − ū1) vᵀ, so r = ‖u − ū‖/‖u‖
    want = np.linalg.norm(u - u.mean()) / np.linalg.norm(u)
    assert metrics.token_residual(rank_one).item() == pytest.approx(want, rel=1e-13)
    centred = _x(8, 5) - _x(8, 5).mean(0)  # mean token 0: r = 1
    assert metrics.token_residual(centred).item() == pytest.approx(1.0, rel=1e-13)


def test_token_residual_is_scale_free_and_the_mean_token_minimises():
    h = _x(9, 6, seed=4) + 2.0
    base = metrics.token_residual(h).item()
    for scale in (1e-150, 1e-3, 1e3, 1e150):
        assert metrics.token_residual(scale * h).item() == pytest.approx(base, rel=1e-12)
    x = h.numpy()
    rng = np.random.default_rng(0)
    for _ in range(20):  # ‖X − 1x̄ᵀ‖_F ≤ ‖X − 1xᵀ‖_F for any x
        other = x.mean(0) + rng.normal(size=6) * 0.1
        assert base <= np.linalg.norm(x - other) / np.linalg.norm(x) + 1e-15


def test_token_residual_of_zero_and_non_finite_input_is_nan():
    h = _x(4 * 5 * 3, 1).reshape(4, 5, 3)
    h[0] = 0.0
    h[1, 2, 1] = math.nan
    h[2, 0, 0] = math.inf
    got = metrics.token_residual(h)
    assert torch.isnan(got[:3]).all()
    assert got[3].item() == pytest.approx(_residual_np(h[3].numpy()), rel=1e-12)


def test_a_bad_act_is_refused_before_any_run():
    """model=attention with a non-linear act fails validation (engines.train.validate), not at the first build."""
    cfg = config.compose("train", ["model=attention", "act=relu"])
    with pytest.raises(ConfigError, match=r"act\.name"):
        train.validate(cfg)

"""Normalisation layers against numpy float64 closed forms (paper orientation H = xᵀ ∈ R^{d×n}) and torch.nn's layers
(BatchNorm, LayerNorm, RMSNorm, GroupNorm: forward and backward), weight normalization against its closed forms and
in the engine, and the registry that chooses norms, activations, initialisations and models by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnexp.errors import ConfigError
from bnexp.nn import ACTIVATIONS, INITS, MLP, MODELS, ConvNet, Registry, act_layer, is_norm, norm_layer
from bnexp.nn.norms import NORM_TYPES, NORMS, BatchNormDetachVar, make_norm

BN_NAMES = ["bn_torch", "bn_nocenter", "bn_theory", "bn_center", "bn_detach_var"]
IDENTITY_SLOTS = ("none", "weightnorm")  # norm layers that are the identity (weightnorm normalises the weights)


def _batch(n: int = 64, d: int = 12, seed: int = 0) -> torch.Tensor:
    """(n, d) float64 batch with a nonzero, feature-dependent mean and scale."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    scale = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    return z * scale + torch.linspace(1.0, 4.0, d, dtype=torch.float64)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy()


def test_bn_torch_matches_numpy_train_and_eval():
    x = _batch()
    d = x.shape[1]
    bn = make_norm("bn_torch", d).double()
    assert isinstance(bn, nn.BatchNorm1d) and bn.eps == 1e-5 and bn.momentum == 0.1 and bn.affine
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2.0, d))
        bn.bias.copy_(torch.linspace(-1.0, 1.0, d))
    gamma, beta, a = _np(bn.weight), _np(bn.bias), _np(x)
    mu, var = a.mean(0), a.var(0)  # biased variance for the forward
    ref = (a - mu) / np.sqrt(var + 1e-5) * gamma + beta
    np.testing.assert_allclose(_np(bn(x)), ref, rtol=1e-10, atol=1e-12)
    # Running statistics: momentum 0.1 from (0, 1), with the unbiased variance.
    np.testing.assert_allclose(_np(bn.running_mean), 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(_np(bn.running_var), 0.9 + 0.1 * a.var(0, ddof=1), rtol=1e-12)
    bn.eval()
    run_mu, run_var = 0.1 * mu, 0.9 + 0.1 * a.var(0, ddof=1)
    np.testing.assert_allclose(
        _np(bn(x)), (a - run_mu) / np.sqrt(run_var + 1e-5) * gamma + beta, rtol=1e-10, atol=1e-12
    )


def test_bn_center_equals_torch_batchnorm_and_numpy():
    x = _batch()
    d = x.shape[1]
    m = make_norm("bn_center", d)
    # torch refuses eps = 0 in training mode; 1e-30 is far below float64 resolution of var ≈ 1.
    ref_torch = nn.BatchNorm1d(d, eps=1e-30, affine=False, track_running_stats=False).double()
    a = _np(x)
    ref = (a - a.mean(0)) / a.std(0)  # numpy std is the biased one (ddof=0)
    np.testing.assert_allclose(_np(m(x)), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_np(m(x)), _np(ref_torch(x)), rtol=1e-12, atol=1e-12)
    # Paper form (depth paper): √n (h − mean h)/‖h − mean h‖₂ per feature row of H = xᵀ.
    hc = a.T - a.T.mean(1, keepdims=True)
    paper = np.sqrt(a.shape[0]) * hc / np.linalg.norm(hc, axis=1, keepdims=True)
    np.testing.assert_allclose(_np(m(x)).T, paper, rtol=1e-12, atol=1e-12)
    m.eval()  # batch statistics in eval mode too
    np.testing.assert_allclose(_np(m(x)), ref, rtol=1e-12, atol=1e-12)


def test_bn_center_unbiased_uses_torch_std():
    x = _batch()
    y = make_norm("bn_center", x.shape[1], unbiased=True)(x)
    ref = (x - x.mean(0)) / x.std(0)  # torch.std: unbiased
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_bn_theory_is_diag_m_inv_sqrt_h():
    x = _batch()
    n, d = x.shape
    m = make_norm("bn_theory", d)
    y = m(x)
    H = _np(x).T  # paper orientation, d × n
    M = H @ H.T / n
    ref = np.diag(np.diag(M) ** -0.5) @ H
    np.testing.assert_allclose(_np(y).T, ref, rtol=1e-12, atol=1e-12)
    My = _np(y).T @ _np(y) / n
    np.testing.assert_allclose(np.diag(My), np.ones(d), rtol=1e-12)  # unit second moment per feature
    assert np.trace(My) == pytest.approx(d, rel=1e-12)
    assert list(m.parameters()) == [] and list(m.buffers()) == []
    m.eval()
    torch.testing.assert_close(m(x), y, rtol=0, atol=0)  # no running statistics


def test_bn_theory_unit_norm_rows_in_paper_orientation():
    x = _batch()
    n, d = x.shape
    y = make_norm("bn_theory", d, unit_norm=True)(x)
    row_norms = np.linalg.norm(_np(y).T, axis=1)  # each feature row of H ∈ R^{d×n}
    np.testing.assert_allclose(row_norms, np.ones(d), rtol=1e-12)
    np.testing.assert_allclose(_np(y) * np.sqrt(n), _np(make_norm("bn_theory", d)(x)), rtol=1e-12)


def test_bn_theory_eps_guard_on_zero_feature():
    x = _batch()
    x[:, 0] = 0.0
    assert torch.isnan(make_norm("bn_theory", x.shape[1])(x)[:, 0]).all()  # theory: 0/0
    y = make_norm("bn_theory", x.shape[1], eps=1e-12)(x)
    assert torch.isfinite(y).all() and (y[:, 0] == 0).all()


def test_bn_nocenter_matches_numpy_and_does_not_centre():
    x = _batch()
    d = x.shape[1]
    m = make_norm("bn_nocenter", d).double()
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, d))
        m.bias.copy_(torch.linspace(-1.0, 1.0, d))
    a, gamma, beta = _np(x), _np(m.weight), _np(m.bias)
    sq = (a**2).mean(0)
    np.testing.assert_allclose(_np(m(x)), a / np.sqrt(sq + 1e-5) * gamma + beta, rtol=1e-12, atol=1e-12)
    # Without the affine part each feature is only rescaled by 1/rms > 0, so the batch mean keeps its
    # sign pattern and stays far from 0 — unlike any centred BN (whose batch mean is 0).
    signs = torch.where(torch.arange(d) % 2 == 0, 1.0, -1.0).double()
    xs = x * signs
    y = make_norm("bn_nocenter", d, affine=False).double()(xs)
    mean_x, mean_y = xs.mean(0), y.mean(0)
    torch.testing.assert_close(mean_y, mean_x / torch.sqrt(xs.square().mean(0) + 1e-5), rtol=1e-12, atol=0)
    assert torch.equal(torch.sign(mean_y), signs) and (mean_y.abs() > 0.3).all()
    assert make_norm("bn_center", d)(xs).mean(0).abs().max() < 1e-12


def test_bn_nocenter_eval_uses_running_second_moment():
    x1, x2 = _batch(seed=1), _batch(seed=2)
    d = x1.shape[1]
    m = make_norm("bn_nocenter", d).double()
    m(x1)
    m(x2)
    running = 0.9 * (0.9 * 1.0 + 0.1 * (_np(x1) ** 2).mean(0)) + 0.1 * (_np(x2) ** 2).mean(0)
    np.testing.assert_allclose(_np(m.running_sq), running, rtol=1e-12)
    m.eval()
    x3 = _batch(seed=3)
    np.testing.assert_allclose(_np(m(x3)), _np(x3) / np.sqrt(running + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(_np(m.running_sq), running, rtol=1e-12)  # eval does not update


@pytest.mark.parametrize("name", ["bn_nocenter", "bn_theory", "bn_center"])
def test_custom_norm_gradients(name):
    x = _batch(n=10, d=4).requires_grad_(True)
    m = make_norm(name, 4).double()
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-6)
    m(x).square().sum().backward()
    params = list(m.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    if name == "bn_nocenter":
        assert len(params) == 2


@pytest.mark.parametrize("name", [*BN_NAMES, "none"])
def test_conv_input_reduces_over_batch_and_space(name):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, 4, 3, generator=g, dtype=torch.float64) + 2.0  # (N, C, H, W)
    C = x.shape[1]
    conv_norm = make_norm(name, C, spatial=True).double()
    flat_norm = make_norm(name, C).double()
    if name == "bn_torch":
        assert isinstance(conv_norm, nn.BatchNorm2d) and isinstance(flat_norm, nn.BatchNorm1d)
    flat = x.permute(0, 2, 3, 1).reshape(-1, C)  # (N·H·W, C): each channel's entries as one column
    ref = flat_norm(flat).reshape(6, 4, 3, C).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv_norm(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", BN_NAMES)
def test_scale_invariance(name):
    x = _batch()
    m = make_norm(name, x.shape[1]).double()
    # eps = 1e-5 in bn_torch / bn_nocenter / bn_detach_var breaks exact invariance by O(eps / variance).
    tol = 1e-4 if name in ("bn_torch", "bn_nocenter", "bn_detach_var") else 1e-12
    torch.testing.assert_close(m(7.0 * x), m(x), rtol=tol, atol=tol)


def test_none_is_identity():
    x = _batch()
    m = make_norm("none", x.shape[1])
    assert m(x) is x


def test_errors_name_key_and_choices():
    with pytest.raises(ConfigError) as err:
        make_norm("bn_foo", 8)
    msg = str(err.value)
    assert "norm.name" in msg and "bn_foo" in msg and all(name in msg for name in NORMS)
    with pytest.raises(ConfigError, match="unit_norm"):
        make_norm("bn_theory", 8, centre=True)
    with pytest.raises(ConfigError, match=r"norm\.eps"):
        make_norm("bn_center", 8, eps=-1.0)
    with pytest.raises(ValueError, match="8 features"):
        make_norm("bn_theory", 8)(torch.ones(4, 3))


# ------------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize(("registry", "key"), [(NORMS, "norm.name"), (ACTIVATIONS, "act.name"),
                                               (INITS, "init.name"), (MODELS, "model.name")])
def test_registry_error_names_the_key_the_value_and_every_choice(registry, key):
    with pytest.raises(ConfigError) as err:
        registry.get("bn_foo")
    assert err.value.key == key and err.value.value == "bn_foo"
    assert str(err.value) == f"{key}='bn_foo' is not valid; choose one of: {', '.join(sorted(registry))}"
    with pytest.raises(ConfigError) as err:
        registry.get("bn_foo", "chain.other")  # the key where the name came from
    assert err.value.key == "chain.other" and str(err.value).startswith("chain.other='bn_foo'")
    with pytest.raises(ConfigError, match=key):
        registry["bn_foo"]
    name = next(iter(registry))
    assert registry.get(name) is registry[name] and name in registry and len(registry) == len(registry.names)
    assert [1, 2] not in registry  # an unhashable config value is no name


def test_registry_register():
    reg = Registry("thing.name", {"a": 1})
    assert reg.register("b", 2) == 2 and reg.names == ("a", "b") and sorted(reg) == ["a", "b"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 3)


def test_norm_types_cover_every_registered_norm():
    for name in NORMS:
        for spatial in (False, True):
            layer = norm_layer(name, spatial=spatial)(8)  # 8: groupnorm's default groups divide it
            assert is_norm(layer) is (name not in IDENTITY_SLOTS), (name, spatial)
    assert is_norm(nn.GroupNorm(2, 4)) and is_norm(nn.LayerNorm(4)) and is_norm(nn.RMSNorm(4))
    assert not is_norm(nn.Linear(2, 2))
    assert nn.BatchNorm2d in {type(norm_layer("bn_torch", spatial=True)(3))} and issubclass(nn.BatchNorm2d, NORM_TYPES)


def test_factories_validate_early():
    with pytest.raises(ConfigError, match=r"^norm\.name='bn_foo'"):
        norm_layer("bn_foo")
    with pytest.raises(ConfigError, match="unit_norm"):
        norm_layer("bn_theory", centre=True)
    with pytest.raises(ConfigError, match=r"^act\.name='gelu'"):
        act_layer("gelu")


@pytest.mark.parametrize("order", ["norm_act", "pre_act"])
def test_models_take_norm_and_act_factories(order):
    x = _batch(8, 12)
    by_name = MLP(12, 6, 3, 2, norm="bn_theory", act="tanh", order=order, norm_kwargs={"unit_norm": True},
                  gain_exponent=0.4)
    torch.manual_seed(0)
    by_factory = MLP(12, 6, 3, 2, norm=norm_layer("bn_theory", unit_norm=True), act=act_layer("tanh"), order=order,
                     gain_exponent=0.4)
    by_factory.load_state_dict(by_name.state_dict())
    torch.testing.assert_close(by_factory.double()(x), by_name.double()(x), rtol=0, atol=0)
    assert [m.gain for m in by_factory.act] == [m.gain for m in by_name.act]
    conv = ConvNet(3 * 4 * 4, 5, 2, 3, norm=lambda c: nn.GroupNorm(1, c), act="relu")
    assert all(isinstance(n, nn.GroupNorm) for n in conv.norm)  # any factory, e.g. a norm no registry names


# ------------------------------------------------------------------------------------------------ bn_detach_var


def _detach_var_pair(shape: tuple[int, ...], **options) -> tuple[nn.Module, nn.Module]:
    """(bn_detach_var, torch BatchNorm1d/2d) in float64 with the same options and the same non-trivial γ, β."""
    C = shape[1]
    spatial = len(shape) == 4
    ours = make_norm("bn_detach_var", C, spatial=spatial, **options).double()
    ref = (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(C, **options).double()
    if ours.affine:
        with torch.no_grad():
            for m in (ours, ref):
                m.weight.copy_(torch.linspace(0.5, 2.0, C))
                m.bias.copy_(torch.linspace(-1.0, 1.0, C))
    return ours, ref


def _shaped_batch(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 3.0, shape[1], dtype=torch.float64).view(1, -1, *([1] * (len(shape) - 2)))
    return torch.randn(shape, generator=g, dtype=torch.float64) * scale + 1.5


SHAPES = [(32, 6), (5, 4, 3, 2)]  # (n, d) against BatchNorm1d, (n, C, H, W) against BatchNorm2d


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"momentum": 0.3, "affine": False},
                                     {"track_running_stats": False}])
def test_bn_detach_var_forward_equals_torch_batchnorm_train_and_eval(shape, options):
    ours, ref = _detach_var_pair(shape, **options)
    assert isinstance(ours, BatchNormDetachVar) and is_norm(ours) and ours.eps == 1e-5
    assert ours.momentum == ref.momentum and ours.affine == ref.affine
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()]
    for seed in range(4):  # the running statistics move (momentum, unbiased variance) as torch's do
        x = _shaped_batch(shape, seed)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)
        for (name, a), (_, b) in zip(ours.named_buffers(), ref.named_buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    if ours.track_running_stats:
        assert int(ours.num_batches_tracked) == 4
        assert not torch.allclose(ours.running_var, torch.ones_like(ours.running_var))
    ours.eval()
    ref.eval()
    x = _shaped_batch(shape, 9)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)  # running (or batch) statistics
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), rtol=1e-12, atol=1e-12)  # eval updates nothing


@pytest.mark.parametrize("shape", SHAPES)
def test_bn_detach_var_gradient_treats_the_variance_as_a_constant(shape):
    """Autograd gradients of a random linear functional ⟨r, y⟩ equal those of the explicit formula
    y = (x − μ_B(x))·c·γ + β with c = 1/sqrt(var_B(x) + eps) a plain constant tensor (no grad)."""
    ours, _ = _detach_var_pair(shape)
    x = _shaped_batch(shape, 1)
    r = _shaped_batch(shape, 2) - 1.5  # the functional's random weights
    dims = (0, *range(2, len(shape)))

    def view(v: torch.Tensor) -> torch.Tensor:
        return v.view(1, -1, *([1] * (len(shape) - 2)))

    xa = x.clone().requires_grad_(True)
    (ours(xa) * r).sum().backward()

    xb = x.clone().requires_grad_(True)
    gamma = ours.weight.detach().clone().requires_grad_(True)
    beta = ours.bias.detach().clone().requires_grad_(True)
    a = x.numpy()
    ax = tuple(dims)
    c = torch.from_numpy(1.0 / np.sqrt(a.var(axis=ax) + 1e-5))  # float64 constant, no autograd history
    assert not c.requires_grad
    y = (xb - xb.mean(dims, keepdim=True)) * view(c) * view(gamma) + view(beta)
    (y * r).sum().backward()

    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, gamma.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, beta.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_bn_detach_var_gradient_differs_from_torch_by_the_variance_path(shape):
    """Same forward, same γ/β gradients as torch's BN, but the input gradient lacks the variance path:
    torch's dL/dx = c·γ·(g − mean(g) − x̂·mean(g·x̂)), the detached one c·γ·(g − mean(g)), with g = dL/dy and
    x̂ = (x − μ_B)·c — so they differ by c·γ·x̂·mean(g·x̂), which is far from 0 for a random g."""
    ours, ref = _detach_var_pair(shape)
    x = _shaped_batch(shape, 3)
    g = _shaped_batch(shape, 4) - 1.5
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    for m, xi in zip((ours, ref), xs):
        (m(xi) * g).sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-10, atol=1e-12)
    diff = xs[1].grad - xs[0].grad
    assert diff.abs().max() > 1e-2  # detaching is visible in the gradient

    dims = (0, *range(2, len(shape)))
    var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
    c = 1.0 / torch.sqrt(var + 1e-5)
    xhat = (x - mean) * c
    gamma = ref.weight.detach().view(1, -1, *([1] * (len(shape) - 2)))
    torch.testing.assert_close(diff, -c * gamma * xhat * (g * xhat).mean(dims, keepdim=True), rtol=1e-8, atol=1e-10)


def test_bn_detach_var_options_and_errors():
    with pytest.raises(ConfigError, match=r"norm\.eps"):
        make_norm("bn_detach_var", 4, eps=-1.0)
    with pytest.raises(ConfigError, match=r"norm\.momentum"):
        make_norm("bn_detach_var", 4, momentum=1.5)
    with pytest.raises(ConfigError, match="unit_norm"):
        norm_layer("bn_detach_var", unit_norm=True)
    with pytest.raises(ValueError, match="4 features"):
        make_norm("bn_detach_var", 4)(torch.ones(5, 3))
    with pytest.raises(ValueError, match="more than 1 value"):
        make_norm("bn_detach_var", 4)(torch.ones(1, 4))
    assert type(make_norm("bn_detach_var", 4, spatial=True)) is BatchNormDetachVar


# ------------------------------------------------------------------------------------------------ per-sample norms

PER_SAMPLE = ["layernorm", "rmsnorm", "groupnorm"]
SAMPLE_SHAPES = [(7, 16), (5, 16, 3, 2)]  # (n, d) and (n, C, H, W)


def _affine(C: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random non-trivial per-channel γ (away from 1) and β (away from 0), float64."""
    g = torch.Generator().manual_seed(100 + seed)
    return (torch.rand(C, generator=g, dtype=torch.float64) * 1.5 + 0.25,
            torch.randn(C, generator=g, dtype=torch.float64))


def _torch_twin(name: str, shape: tuple[int, ...], groups: int, gamma: torch.Tensor, beta: torch.Tensor) -> nn.Module:
    """torch.nn's layer that our ``name`` must equal, float64, with γ (and β) set — per-channel γ as torch's
    elementwise weight of shape (C, H, W) for RMSNorm on conv maps."""
    C = shape[1]
    if name == "rmsnorm":
        ref = nn.RMSNorm(shape[1:], eps=1e-5).double()
        with torch.no_grad():
            ref.weight.copy_(gamma.view(-1, *([1] * (len(shape) - 2))).expand(shape[1:]))
        return ref
    if name == "layernorm" and len(shape) == 2:
        ref = nn.LayerNorm(C).double()
    else:  # layernorm on conv maps is GroupNorm(1, C)
        ref = nn.GroupNorm(1 if name == "layernorm" else groups, C).double()
    with torch.no_grad():
        ref.weight.copy_(gamma)
        ref.bias.copy_(beta)
    return ref


@pytest.mark.parametrize("shape", SAMPLE_SHAPES)
@pytest.mark.parametrize(("name", "groups"), [("layernorm", 8), ("rmsnorm", 8), ("groupnorm", 8), ("groupnorm", 4)])
def test_per_sample_norms_equal_torch_forward_and_backward(name, shape, groups):
    C = shape[1]
    options = {"groups": groups} if name == "groupnorm" else {}
    ours = make_norm(name, C, spatial=len(shape) == 4, **options).double()
    assert ours.eps == 1e-5 and is_norm(ours) and float(ours.weight.detach().sum()) == C  # γ starts at 1
    has_beta = name != "rmsnorm"
    bias = getattr(ours, "bias", None)
    assert (bias is not None) is has_beta and (not has_beta or float(bias.detach().abs().sum()) == 0)  # β at 0
    gamma, beta = _affine(C, 0)
    with torch.no_grad():
        ours.weight.copy_(gamma)
        if has_beta:
            ours.bias.copy_(beta)
    ref = _torch_twin(name, shape, groups, gamma, beta)

    shift = torch.linspace(-1, 3, shape[0], dtype=torch.float64).view(-1, *[1] * (len(shape) - 1))
    x = _shaped_batch(shape, 5) * 2.0 + shift  # every sample with its own mean and scale
    upstream = _shaped_batch(shape, 6) - 1.5
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    ys = [m(xi) for m, xi in zip((ours, ref), xs)]
    torch.testing.assert_close(ys[0], ys[1], rtol=1e-6, atol=1e-6)
    for y in ys:
        (y * upstream).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-6, atol=1e-6)
    ref_gamma_grad = ref.weight.grad
    if ref_gamma_grad.dim() > 1:  # RMSNorm on conv maps: torch's γ per (c, h, w), ours per channel
        ref_gamma_grad = ref_gamma_grad.flatten(1).sum(1)
    torch.testing.assert_close(ours.weight.grad, ref_gamma_grad, rtol=1e-6, atol=1e-6)
    if has_beta:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-6, atol=1e-6)
    assert ours.weight.grad.abs().min() > 1e-3  # the affine gradients are not trivially zero
    ours.eval()  # no running statistics: eval mode is the same map
    torch.testing.assert_close(ours(x), ys[0].detach(), rtol=0, atol=0)


def test_per_sample_norms_normalise_each_sample_alone():
    """Independent numpy oracle on a (n, C, H, W) batch: per sample, mean 0 and variance 1 over each group
    (layernorm: the whole sample), RMS 1 for rmsnorm; a batch of one sample is fine (no batch statistics)."""
    x = _shaped_batch((4, 16, 3, 3), 2)
    a = _np(x).reshape(4, 16, 9)
    for name, G in (("layernorm", 1), ("groupnorm", 8), ("groupnorm", 2)):
        y = _np(make_norm(name, 16, spatial=True, **({"groups": G} if name == "groupnorm" else {}))(x))
        grouped = a.reshape(4, G, -1)
        ref = (grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(y, ref.reshape(x.shape), rtol=1e-12, atol=1e-12)
    ref = a / np.sqrt((a.reshape(4, -1) ** 2).mean(1) + 1e-5)[:, None, None]
    np.testing.assert_allclose(_np(make_norm("rmsnorm", 16, spatial=True)(x)), ref.reshape(x.shape), rtol=1e-12)
    one = make_norm("layernorm", 16)(x[:1, :, 0, 0])
    np.testing.assert_allclose(_np(one), _np(make_norm("layernorm", 16)(x[:, :, 0, 0]))[:1], rtol=1e-12)


def test_groupnorm_groups_must_divide_the_channels():
    with pytest.raises(ConfigError) as err:
        make_norm("groupnorm", 12)  # default groups 8
    assert err.value.key == "norm.groups" and err.value.value == 8 and "12" in str(err.value)
    with pytest.raises(ConfigError, match=r"norm\.groups=6.*20"):
        MLP(6, 20, 2, 3, norm="groupnorm", norm_kwargs={"groups": 6})  # raised when the model builds its norms
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match=r"norm\.groups"):
            make_norm("groupnorm", 12, groups=bad)
    with pytest.raises(ConfigError, match="groups"):
        norm_layer("layernorm", groups=2)  # layernorm has one group; the option is groupnorm's
    with pytest.raises(ConfigError, match=r"norm\.eps"):
        make_norm("rmsnorm", 4, eps=-1e-5)
    assert make_norm("groupnorm", 12, groups=3).groups == 3


def test_norm_configs_name_registered_norms():
    from bnexp import config

    for name, options in (("layernorm", {}), ("rmsnorm", {}), ("groupnorm", {"groups": 8}), ("weightnorm", {})):
        node = config.compose("train", [f"norm={name}"]).norm
        assert dict(node) == {"name": name, **options}
        make_norm(name, 16, **options)


def test_stacked_sgd_still_refuses_every_norm_but_bn_torch_and_none():
    from bnexp import config
    from bnexp.engines import train_group

    for name in sorted(NORMS):
        cfg = config.compose("train", [f"norm={name}", "optim.epochs=1", "dtype=float32", "runtime.device=cpu"])
        why = train_group.unstackable(cfg)
        assert (why is None) is (name in ("bn_torch", "none")), (name, why)
        assert why is None or why == f"norm {name}"


# ------------------------------------------------------------------------------------------------ weightnorm

TINY = {  # model → (overrides, input shape of one sample)
    "mlp": (["model=mlp", "model.depth=3", "model.width=16"], (12,)),
    "convnet": (["model=convnet", "model.depth=2", "model.width=8"], (3, 4, 4)),
    "resnet": (["model=resnet_mini"], (3, 8, 8)),
}


def _tiny(kind: str, norm: str, *extra: str, seed: int = 3):
    """(model from the engine's make_model in float64, input batch of 6) for a tiny ``kind`` network."""
    from bnexp import config
    from bnexp.engines import train

    overrides, sample = TINY[kind]
    cfg = config.compose("train", [*overrides, f"norm={norm}", *extra])
    d_in = int(np.prod(sample))
    model = train.make_model(cfg, d_in, 5, seed, dtype=torch.float64)
    x = torch.randn(6, *sample, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    return model, x


def _gv(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return module.parametrizations.weight.original0, module.parametrizations.weight.original1


@pytest.mark.parametrize("kind", sorted(TINY))
def test_weightnorm_leaves_the_function_at_init_unchanged(kind):
    from bnexp.nn import trained_weight, weight_normalize
    from bnexp.nn.weight_norm import is_weight_normalized

    init = "init=orthogonal" if kind == "mlp" else "init=xavier_normal"
    model, x = _tiny(kind, "weightnorm", init)
    plain, _ = _tiny(kind, "none", init)
    model.train(), plain.train()
    torch.testing.assert_close(model(x), plain(x), rtol=1e-13, atol=1e-13)
    layers, plain_layers = model.weight_layers(), plain.weight_layers()
    assert all(is_weight_normalized(m) for m in layers)  # hidden layers and the readout alike
    for m, p in zip(layers, plain_layers):
        g, v = _gv(m)
        assert g.shape == (v.shape[0],) and trained_weight(m) is v
        torch.testing.assert_close(v, p.weight, rtol=0, atol=0)  # V = the drawn W
        np.testing.assert_allclose(_np(g), np.linalg.norm(_np(p.weight).reshape(len(g), -1), axis=1), rtol=1e-13)
    with pytest.raises(ValueError, match="already weight-normalised"):
        weight_normalize(model)
    if kind == "mlp":  # init=orthogonal still holds for the direction: the square hidden V have orthonormal rows
        v = _np(_gv(layers[1])[1])
        np.testing.assert_allclose(v @ v.T, np.eye(len(v)), atol=1e-12)
        assert set(dict(model.named_parameters())) - set(dict(plain.named_parameters())) == {
            f"{name}.parametrizations.weight.original{i}" for name in ("fc.0", "fc.1", "fc.2", "readout")
            for i in (0, 1)}


def _perturb(model: nn.Module, seed: int) -> None:
    """g and V away from their init relation (g ≠ ‖V‖), so the closed forms are tested off the init point."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.weight_layers():
            g, v = _gv(m)
            g.copy_(torch.rand(g.shape, generator=gen, dtype=g.dtype) * 2 + 0.5)
            v.add_(0.3 * torch.randn(v.shape, generator=gen, dtype=v.dtype))


@pytest.mark.parametrize("kind", sorted(TINY))
def test_weightnorm_weights_and_gradients_match_the_closed_forms(kind):
    """W = g·V/‖V‖ row-wise (numpy); autograd's ∇_g, ∇_V equal ∇_g = Σ_row ∇_W ⊙ V̂ and
    ∇_V = g/‖V‖ (∇_W − (∇_W·V̂) V̂), with ∇_W from a plain twin network holding W as its weights; grad_norms
    reports ‖∇_V‖_F."""
    from bnexp.probe import grad_norms

    model, x = _tiny(kind, "weightnorm")
    twin, _ = _tiny(kind, "none")
    _perturb(model, 4)
    model.train(), twin.train()
    names = {id(m): name for name, m in model.named_modules()}
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for m in model.weight_layers():
        g, v = (_np(t) for t in _gv(m))
        rows = v.reshape(len(g), -1)
        w = (g[:, None] * rows / np.linalg.norm(rows, axis=1, keepdims=True)).reshape(v.shape)
        np.testing.assert_allclose(_np(m.weight), w, rtol=1e-13, atol=1e-15)
        state[f"{names[id(m)]}.weight"] = torch.from_numpy(w)
    twin.load_state_dict(state)

    target = torch.randn(6, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    loss = (model(x) * target).sum()
    twin_loss = (twin(x) * target).sum()
    torch.testing.assert_close(loss, twin_loss, rtol=1e-12, atol=1e-12)
    norms = grad_norms(model, loss, retain_graph=True)
    params = [t for m in model.weight_layers() for t in _gv(m)]
    grads = torch.autograd.grad(loss, params)
    grad_w = torch.autograd.grad(twin_loss, [m.weight for m in twin.weight_layers()])
    for k, m in enumerate(model.weight_layers()):
        g, v = (_np(t) for t in _gv(m))
        gw = _np(grad_w[k]).reshape(len(g), -1)
        rows = v.reshape(len(g), -1)
        length = np.linalg.norm(rows, axis=1, keepdims=True)
        unit = rows / length
        along = (gw * unit).sum(1, keepdims=True)
        np.testing.assert_allclose(_np(grads[2 * k]), along[:, 0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(_np(grads[2 * k + 1]).reshape(len(g), -1), g[:, None] / length * (gw - along * unit),
                                   rtol=1e-9, atol=1e-12)
        assert float(norms[k]) == pytest.approx(np.linalg.norm(_np(grads[2 * k + 1])), rel=1e-12)
        assert float(norms[k]) > 0 and float(norms[k]) != pytest.approx(np.linalg.norm(gw), rel=1e-6)


@pytest.mark.parametrize("norm", [*PER_SAMPLE, "weightnorm"])
@pytest.mark.parametrize("kind", sorted(TINY))
def test_every_model_kind_trains_a_step_with_each_new_norm(kind, norm):
    model, x = _tiny(kind, norm)
    model.train()
    loss = nn.functional.cross_entropy(model(x), torch.arange(6) % 5)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "groupnorm": "GroupNorm", "weightnorm": "WeightNorm"}[
        norm] in kinds


def test_weightnorm_in_the_engine_init_and_training_runs_write_finite_rows():
    """epochs = 0 with two seeds (the per-seed loop: the vmapped probe is not used), its loss equal to the same
    network's without weight norm; a short training run of two seeds; the refused combinations."""
    from bnexp import config, results
    from bnexp.engines import train

    small = ["model.depth=3", "model.width=16", "data.dim=12", "data.n_train=64", "data.n_test=16",
             "data.batch_size=32", "n_seeds=2", "runtime.progress=false"]
    rows = {}
    for norm in ("weightnorm", "none"):
        writer = results.MemoryWriter()
        train.run(config.compose("train", [*small, f"norm={norm}"]), writer)
        rows[norm] = writer.rows
    values = {(r[0], r[2], r[3]): r[4] for r in rows["weightnorm"]}
    assert {s for s, *_ in rows["weightnorm"]} == {0, 1} and all(np.isfinite(list(values.values())))
    for seed in (0, 1):
        plain = {(r[0], r[2], r[3]): r[4] for r in rows["none"]}
        assert values[(seed, None, "loss")] == pytest.approx(plain[(seed, None, "loss")], rel=1e-12)
        assert all(values[(seed, k, "grad_norm")] > 0 for k in range(4))
    writer = results.MemoryWriter()
    train.run(config.compose("train", [*small, "norm=weightnorm", "optim.epochs=2", "dtype=float32"]), writer)
    metrics = {r[3] for r in writer.rows}
    assert {"train_loss", "test_loss", "grad_norm"} <= metrics and {r[1] for r in writer.rows} == {0, 1, 2}
    assert all(np.isfinite(r[4]) for r in writer.rows)
    with pytest.raises(ConfigError, match=r"runtime\.batch_seeds"):
        train.validate(config.compose("train", [*small, "norm=weightnorm", "runtime.batch_seeds=true"]))
    with pytest.raises(ConfigError, match=r"pretrain\.name='layerwise'"):
        train.validate(config.compose("train", [*small, "norm=weightnorm", "pretrain=layerwise"]))

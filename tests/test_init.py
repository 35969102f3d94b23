"""Weight initialisations: empirical moments against closed forms, Haar checks, reproducibility."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnexp.errors import ConfigError
from bnexp.nn.init import INITS, init_weights
from bnexp.nn.mlp import MLP

FAN_IN, FAN_OUT = 768, 256  # rectangular so that fan_in and fan_out formulas are told apart


def _closed_form(scheme: str, gain: float = 1.0) -> tuple[float, float, float, float, float]:
    """(mean, variance, lower bound, upper bound, kurtosis E[(w−μ)⁴]/var²) of one entry."""
    u = 1 / math.sqrt(FAN_IN)
    xav = 2 / (FAN_IN + FAN_OUT)
    inf = math.inf
    table = {
        "torch_default": (0.0, u**2 / 3, -u, u, 1.8),
        "std_gauss": (0.0, 1.0, -inf, inf, 3.0),
        "std_unif": (0.0, 1.0, -math.sqrt(3), math.sqrt(3), 1.8),
        "asym": (u, u**2 / 3, 0.0, 2 * u, 1.8),
        "xavier_normal": (0.0, xav, -inf, inf, 3.0),
        "xavier_uniform": (0.0, xav, -math.sqrt(3 * xav), math.sqrt(3 * xav), 1.8),
    }
    mean, var, lo, hi, kurt = table[scheme]
    return gain * mean, gain**2 * var, gain * lo, gain * hi, kurt


@pytest.mark.parametrize("gain", [1.0, 2.0])
@pytest.mark.parametrize("scheme", sorted(set(INITS) - {"orthogonal"}))
def test_moments_match_closed_form(scheme, gain):
    layer = nn.Linear(FAN_IN, FAN_OUT).double()
    init_weights(layer, scheme, gain=gain, generator=torch.Generator().manual_seed(0))
    w = layer.weight.detach().flatten()
    n = w.numel()  # 196608 entries
    mean, var, lo, hi, kurt = _closed_form(scheme, gain)
    sd = math.sqrt(var)
    assert abs(w.mean().item() - mean) < 5 * sd / math.sqrt(n)
    assert w.var().item() == pytest.approx(var, rel=0.02)
    k = ((w - w.mean()) ** 4).mean().item() / w.var().item() ** 2
    assert k == pytest.approx(kurt, abs=0.1)  # Gaussian 3 vs uniform 1.8
    assert w.min().item() >= lo and w.max().item() <= hi
    if math.isfinite(hi):  # the uniform laws fill their support
        width = hi - lo
        assert w.min().item() < lo + 1e-3 * width and w.max().item() > hi - 1e-3 * width


def test_conv_fan_in_includes_kernel():
    conv = nn.Conv2d(16, 32, 3).double()  # fan_in = 16·3·3 = 144
    init_weights(conv, "asym", generator=torch.Generator().manual_seed(0))
    w = conv.weight.detach()
    assert w.mean().item() == pytest.approx(1 / 12, rel=0.03)
    assert w.var().item() == pytest.approx(1 / (3 * 144), rel=0.05)
    assert w.min().item() >= 0 and w.max().item() <= 2 / 12


def test_torch_default_is_pytorchs_own_draw():
    layer = nn.Linear(50, 30)
    torch.manual_seed(3)
    layer.reset_parameters()
    ref = layer.weight.detach().clone()
    torch.manual_seed(3)
    init_weights(layer, "torch_default")
    assert torch.equal(layer.weight, ref)


@pytest.mark.parametrize(("fan_in", "fan_out"), [(512, 512), (768, 256), (64, 256)])
def test_orthogonal_is_orthonormal(fan_in, fan_out):
    layer = nn.Linear(fan_in, fan_out, dtype=torch.float64)
    init_weights(layer, "orthogonal", generator=torch.Generator().manual_seed(0))
    w = layer.weight.detach()  # (fan_out, fan_in)
    if fan_out <= fan_in:  # square or wide: orthonormal rows, W Wᵀ = I
        gram, eye = w @ w.T, torch.eye(fan_out, dtype=torch.float64)
    else:  # tall: orthonormal columns, Wᵀ W = I
        gram, eye = w.T @ w, torch.eye(fan_in, dtype=torch.float64)
    assert (gram - eye).abs().max().item() < 1e-10
    if fan_in == fan_out:
        assert (w.T @ w - eye).abs().max().item() < 1e-10


def test_orthogonal_is_haar():
    """Moments of Haar O(d) (Weingarten calculus): E W₀₀ = 0, E W₀₀² = 1/d, E W₀₀⁴ = 3/(d(d+2)),
    E tr W = 0, E (tr W)² = 1. QR without the sign(diag R) fix has W₀₀ < 0 always and fails the first."""
    d, draws = 8, 4000
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(d, d, bias=False, dtype=torch.float64)
    w00, tr = torch.empty(draws, dtype=torch.float64), torch.empty(draws, dtype=torch.float64)
    for i in range(draws):
        init_weights(layer, "orthogonal", generator=g)
        w00[i], tr[i] = layer.weight[0, 0], layer.weight.trace()
    sem = 1 / math.sqrt(draws)
    assert abs(w00.mean().item() * math.sqrt(d)) < 5 * sem
    assert (d * w00.square().mean()).item() == pytest.approx(1.0, abs=5 * math.sqrt(2) * sem)
    assert w00.pow(4).mean().item() == pytest.approx(3 / (d * (d + 2)), rel=0.1)
    assert abs(tr.mean().item()) < 5 * sem
    assert tr.square().mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(2) * sem)


@pytest.mark.parametrize("scheme", sorted(INITS))
def test_same_seed_same_weights_whatever_the_norm(scheme):
    def weights(norm: str, seed: int) -> list[torch.Tensor]:
        model = MLP(20, 16, 3, 4, norm=norm)
        init_weights(model, scheme, generator=torch.Generator().manual_seed(seed))
        return [m.weight.detach().clone() for m in model.weight_layers()]

    a, b, c = weights("bn_torch", 7), weights("bn_theory", 7), weights("bn_torch", 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, z) for x, z in zip(a, c))


@pytest.mark.parametrize("scheme", sorted(INITS))
def test_biases_and_norm_parameters_untouched(scheme):
    torch.manual_seed(0)
    model = MLP(20, 16, 3, 4, norm="bn_torch")
    before = {k: v.detach().clone() for k, v in model.named_parameters() if not k.endswith("weight")}
    before.update({k: v.detach().clone() for k, v in model.named_parameters() if k.startswith("norm")})
    init_weights(model, scheme, generator=torch.Generator().manual_seed(1))
    after = dict(model.named_parameters())
    assert before and all(torch.equal(after[k], v) for k, v in before.items())
    for norm in model.norm:
        assert torch.equal(norm.weight, torch.ones(16)) and torch.equal(norm.bias, torch.zeros(16))


def test_errors_name_key_and_choices():
    with pytest.raises(ConfigError) as err:
        init_weights(nn.Linear(3, 3), "he_normal")
    msg = str(err.value)
    assert "init.name" in msg and "he_normal" in msg and all(s in msg for s in INITS)
    with pytest.raises(ConfigError, match=r"init\.gain"):
        init_weights(nn.Linear(3, 3), "orthogonal", gain=0.0)


def test_zero_bias_sets_every_linear_and_conv_bias_to_zero_and_leaves_the_weights():
    from bnexp import config
    from bnexp.engines import train

    base = ["model.depth=2", "model.width=8", "init=xavier_uniform"]
    plain = train.make_model(config.compose("train", base), 6, 3, seed=4)
    zeroed = train.make_model(config.compose("train", [*base, "+init.zero_bias=true"]), 6, 3, seed=4)
    layers = [m for m in zeroed.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(torch.count_nonzero(m.bias) == 0 for m in layers)
    assert any(torch.count_nonzero(m.bias) > 0 for m in plain.modules() if isinstance(m, torch.nn.Linear))
    for a, b in zip(plain.modules(), zeroed.modules()):
        if isinstance(a, torch.nn.Linear):
            assert torch.equal(a.weight, b.weight)
    with pytest.raises(ConfigError, match=r"init\.zero_bias"):
        train.validate(config.compose("train", [*base, "+init.zero_bias=maybe"]))

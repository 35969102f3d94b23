"""MLP, ResidualMLP and ConvNet: shapes, validation, and forward passes against manual compositions."""

from __future__ import annotations

import math

import pytest
import torch

from bnexp.errors import ConfigError
from bnexp.nn.activations import ACTIVATIONS, gain_schedule, make_activation
from bnexp.nn.convnet import ConvNet
from bnexp.nn.mlp import MLP, ResidualMLP
from bnexp.nn.models import MODELS, build_model
from bnexp.nn.norms import NORMS


def _x(n: int = 16, *shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *(shape or (12,)), generator=g, dtype=torch.float64)


FC_MODELS = ["mlp", "resmlp"]  # fully connected: inputs of any shape are flattened
# Models that take any width and 3×2×2 inputs; alexnet_deep's fixed channels and pools need width 256 and images of
# side >= 15 (tests/test_models_conv.py runs it on every norm and activation); custom is a factory's own model
# (tests/test_custom_model.py)
ANY_SIZE_MODELS = [name for name in sorted(MODELS) if name not in ("alexnet_deep", "custom")]


def _rms_norm(h: torch.Tensor) -> torch.Tensor:
    """diag(M)^{-1/2} H in code orientation, written independently of bnexp."""
    return h / h.square().mean(0).sqrt()


@pytest.mark.parametrize("name", FC_MODELS)
def test_shapes_and_flattening(name):
    torch.manual_seed(0)
    model = build_model(name, d_in=12, width=10, depth=3, d_out=5).double()
    x = _x(8, 3, 2, 2)  # (n, 3, 2, 2) is flattened to (n, 12)
    out, layers = model.forward_features(x)
    assert model(x).shape == out.shape == (8, 5)
    assert len(layers) == 3 and all(set(layer) == {"pre", "norm", "post"} for layer in layers)
    assert all(t.shape == (8, 10) for layer in layers for t in layer.values())
    lin = model.weight_layers()
    shapes = [(m.in_features, m.out_features) for m in lin]
    if name == "mlp":  # [fc_0, fc_1, fc_2, readout]
        assert shapes == [(12, 10), (10, 10), (10, 10), (10, 5)]
    else:  # [fc_in, W_0, W_1, W_2, readout]
        assert shapes == [(12, 10), (10, 10), (10, 10), (10, 10), (10, 5)]
    headless = build_model(name, d_in=12, width=10, depth=3).double()
    assert headless(x).shape == (8, 10) and len(headless.weight_layers()) == len(lin) - 1


@pytest.mark.parametrize("name", ANY_SIZE_MODELS)
def test_forward_features_matches_forward(name):
    torch.manual_seed(0)
    model = build_model(name, d_in=12, width=10, depth=4, d_out=3, norm="bn_torch").double()
    x = _x(8, 3, 2, 2)
    out, layers = model.forward_features(x)
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    headless = build_model(name, d_in=12, width=10, depth=4).double()
    last, layers = headless.forward_features(x)
    torch.testing.assert_close(last.flatten(1), layers[-1]["post"], rtol=0, atol=0)


def test_validation_errors_name_the_key():
    for kwargs, key in [
        ({"depth": 0}, "model.depth"),
        ({"width": 0}, "model.width"),
        ({"depth": 2.5}, "model.depth"),
        ({"d_out": 0}, "model.d_out"),
    ]:
        for cls in (MLP, ResidualMLP):
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                cls(**{"d_in": 4, "width": 4, "depth": 2, **kwargs})
    with pytest.raises(ConfigError, match=r"model\.order.*act_norm.*norm_act"):
        MLP(4, 4, 2, order="pre")
    with pytest.raises(ConfigError, match=r"model\.placement.*post.*pre"):
        ResidualMLP(4, 4, 2, placement="mid")
    with pytest.raises(ConfigError, match=r"model\.name.*mlp.*resmlp"):
        build_model("vgg99", d_in=4, width=4, depth=2)
    with pytest.raises(ConfigError, match=r"norm\.name"):
        MLP(4, 4, 2, norm="bn_foo")
    with pytest.raises(ConfigError, match=r"act\.name.*linear.*relu.*sigmoid.*sin.*tanh"):
        MLP(4, 4, 2, act="gelu")


def test_gain_schedule_values():
    assert gain_schedule(0, 0.4) == 1.0
    assert gain_schedule(9, 0.4) == pytest.approx(10**-0.4)
    assert gain_schedule(99, 0.4, constant=0.5) == pytest.approx(0.5 * 100**-0.4)
    assert gain_schedule(123, 0.0, constant=0.7) == 0.7  # depth paper Fig F1: constant gain
    with pytest.raises(ConfigError):
        gain_schedule(-1)
    model = MLP(4, 4, 5, gain_exponent=0.4, gain=2.0)
    assert [a.gain for a in model.act] == pytest.approx([2.0 * (l + 1) ** -0.4 for l in range(5)])
    x = torch.linspace(-2, 2, 9)
    torch.testing.assert_close(make_activation("sin", 0.3)(x), torch.sin(0.3 * x))  # σ(αx), no 1/α after
    torch.testing.assert_close(make_activation("linear", 0.3)(x), 0.3 * x)


@pytest.mark.parametrize("order", ["norm_act", "act_norm", "pre_act"])
def test_order_is_manual_composition(order):
    torch.manual_seed(0)
    model = MLP(12, 10, 4, 3, norm="bn_theory", act="tanh", order=order, gain_exponent=0.4).double()
    x = _x()
    h = x
    for l, fc in enumerate(model.fc):
        alpha = (l + 1) ** -0.4
        if order == "pre_act":  # ortho Fig 5: the activation also acts on the raw input
            h = _rms_norm(fc(torch.tanh(alpha * h)))
            continue
        z = fc(h)
        h = torch.tanh(alpha * _rms_norm(z)) if order == "norm_act" else _rms_norm(torch.tanh(alpha * z))
    torch.testing.assert_close(model(x), model.readout(h), rtol=1e-12, atol=1e-12)
    other = MLP(12, 10, 4, 3, norm="bn_theory", act="tanh", gain_exponent=0.4).double()
    other.load_state_dict(model.state_dict())
    other.order = {"norm_act": "act_norm", "act_norm": "pre_act", "pre_act": "norm_act"}[order]
    assert not torch.allclose(other(x), model(x))


@pytest.mark.parametrize("placement", ["post", "pre", "branch"])
@pytest.mark.parametrize("gamma", [0.3, math.inf])
def test_residual_is_manual_composition(placement, gamma):
    torch.manual_seed(0)
    model = ResidualMLP(12, 10, 4, norm="bn_theory", act="relu", gamma=gamma, placement=placement).double()
    x = _x()
    h = model.fc_in(x)
    for fc in model.fc:
        if placement == "post":
            branch = fc(torch.relu(h))
            h = _rms_norm(branch if math.isinf(gamma) else h + gamma * branch)
        elif placement == "branch":  # the depth paper's Fig J1 (assumed): x + σ(BN(W x))
            branch = fc(h)
            out = torch.relu(_rms_norm(branch))
            h = out if math.isinf(gamma) else h + gamma * out
        else:
            branch = fc(torch.relu(_rms_norm(h)))
            h = branch if math.isinf(gamma) else h + gamma * branch
    torch.testing.assert_close(model(x), h, rtol=1e-12, atol=1e-12)
    _, layers = model.forward_features(x)
    torch.testing.assert_close(layers[-1]["pre"], branch, rtol=1e-12, atol=1e-12)


def test_post_norm_residual_keeps_trace_m_equal_d():
    torch.manual_seed(0)
    n, d = 32, 24
    model = ResidualMLP(12, d, 20, norm="bn_theory", act="tanh", gamma=0.5).double()
    _, layers = model.forward_features(_x(n))
    for layer in layers:
        h = layer["post"]
        M = h.T @ h / n  # d × d second-moment matrix M = H Hᵀ / N
        assert M.trace().item() == pytest.approx(d, rel=1e-12)
        torch.testing.assert_close(M.diagonal(), torch.ones(d, dtype=torch.float64))


# every model × norm × activation it accepts (the attention stack has no activation: act must be linear)
COMBINATIONS = [(name, norm, act) for name in ANY_SIZE_MODELS for norm in sorted(NORMS) for act in sorted(ACTIVATIONS)
                if name != "attention" or act == "linear"]


@pytest.mark.parametrize("name, norm, act", COMBINATIONS)
def test_forward_backward_every_combination(name, norm, act):
    torch.manual_seed(0)
    model = build_model(name, d_in=12, width=8, depth=3, d_out=4, norm=norm, act=act)
    x = torch.randn(16, 3, 2, 2)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(16) % 4)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("order", ["pre_act", "norm_act"])
def test_convnet_is_manual_composition(order):
    torch.manual_seed(0)
    model = ConvNet(3 * 6 * 6, 5, 3, 4, norm="bn_theory", act="relu", order=order, padding_mode="reflect").double()
    x = _x(7, 3, 6, 6)
    h = x
    for conv in model.conv:
        w = conv.weight
        if order == "pre_act":
            z = torch.nn.functional.conv2d(torch.nn.functional.pad(torch.relu(h), (1, 1, 1, 1), mode="reflect"), w)
            h = z / z.square().mean(dim=(0, 2, 3), keepdim=True).sqrt()  # per channel over (N, H, W)
        else:
            z = torch.nn.functional.conv2d(torch.nn.functional.pad(h, (1, 1, 1, 1), mode="reflect"), w)
            h = torch.relu(z / z.square().mean(dim=(0, 2, 3), keepdim=True).sqrt())
    out, layers = model.forward_features(x)
    torch.testing.assert_close(out, model.readout(h.mean(dim=(2, 3))), rtol=1e-12, atol=1e-12)
    assert all(t.shape == (7, 5 * 36) for layer in layers for t in layer.values())  # flattened feature maps
    torch.testing.assert_close(layers[-1]["post"], h.flatten(1), rtol=1e-12, atol=1e-12)


def test_convnet_validation_names_the_key():
    for kwargs, key in [({"kernel": 2}, "model.kernel"), ({"order": "x"}, "model.order"),
                        ({"padding_mode": "zero"}, "model.padding_mode"), ({"in_channels": 5}, "model.in_channels")]:
        with pytest.raises(ConfigError) as err:
            ConvNet(3 * 4 * 4, 4, 2, **kwargs)
        assert err.value.key == key
    with pytest.raises(ValueError, match="expected images"):
        ConvNet(3 * 4 * 4, 4, 2)(torch.randn(2, 48))

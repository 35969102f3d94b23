"""The ortho paper's iterative orthogonalization init (``pretrain=svd_orth``, bnexp.training.svd_init): MLP and conv
weights against float64 numpy oracles of the released code, ‖W H‖_F = 1 per re-initialised layer, the V' slices'
closed forms, the orthogonality gap it lowers, the eps clamp, the config checks and a run through the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bnexp import data, metrics, probe, results
from bnexp.config import compose
from bnexp.engines import train
from bnexp.engines.train import make_model
from bnexp.errors import ConfigError
from bnexp.nn import MLP
from bnexp.nn.convnet import ConvNet
from bnexp.training import pretrain

XAVIER = ["init=xavier_uniform", f"init.gain={math.sqrt(2)}"]


def _node(*overrides: str):
    return compose("train", ["pretrain=svd_orth", "pretrain.progress=false", *overrides]).pretrain


def _mlp(*overrides: str, depth: int = 5, width: int = 12, dim: int = 7, seed: int = 0, bias: bool = False):
    """A vanilla ReLU MLP (Xavier-uniform, gain √2) and gaussian data, built as the trainer builds them."""
    cfg = compose("train", ["model=mlp", "norm=none", *XAVIER, f"model.depth={depth}", f"model.width={width}",
                            f"model.bias={str(bias).lower()}", "data=gaussian", f"data.dim={dim}", "data.n_train=256",
                            "data.n_test=8", *overrides])
    x, y, *_ = data.make_dataset(cfg.data, seed, dtype=torch.float64)
    return make_model(cfg, x[0].numel(), 10, seed, dtype=torch.float64), x, y


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _code_weight(p: np.ndarray, out: int, power: float) -> np.ndarray:
    """The released code's weight from a layer input P (rows = samples): U[:out,:out] diag(s[:out]^-p) Vᵀ[:out],
    scaled to ‖P Wᵀ‖_F = 1."""
    u, s, vt = np.linalg.svd(p, full_matrices=False)
    w = u[:out, :out] @ np.diag(s[:out] ** -power) @ vt[:out]
    return w / np.linalg.norm(p @ w.T)


def _layer_inputs(net: nn.Module, layers: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """What the model's own forward feeds each of ``layers`` on x."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach())) for m in layers]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


# ------------------------------------------------------------------------------------------------ MLP


@pytest.mark.parametrize(("power", "bias"), [(1.0, False), (0.5, True), (None, True)])
def test_mlp_weights_equal_the_codes_algorithm_in_float64(power, bias):
    net, x, y = _mlp(bias=bias)
    before = _state(net)
    node = _node(f"pretrain.power={'null' if power is None else power}")
    stats = pretrain.pretrain(net, x, y, node, seed=0)
    # the oracle: the init batch is the first 3·width samples; H ← relu(H W₀ᵀ + b₀), then per hidden→hidden layer
    # W = U[:d,:d] diag(s^-p) Vᵀ / ‖H Wᵀ‖_F and H ← relu(H Wᵀ) (the target's bias is 0)
    p_used = 1.0 if power is None else power  # null → 1.0 for Linear layers (the MLP code)
    h = x[:36].numpy()
    w0 = before["fc.0.weight"].numpy()
    h = np.maximum(h @ w0.T + (before["fc.0.bias"].numpy() if bias else 0.0), 0.0)
    for l in range(1, 5):
        w = _code_weight(h, 12, p_used)
        np.testing.assert_allclose(net.fc[l].weight.detach().numpy(), w, rtol=1e-9, atol=1e-12)
        if bias:
            assert torch.equal(net.fc[l].bias, torch.zeros(12, dtype=torch.float64))
        h = np.maximum(h @ w.T, 0.0)
    after = net.state_dict()
    for name in ("fc.0.weight", "readout.weight", *(("fc.0.bias", "readout.bias") if bias else ())):
        assert torch.equal(before[name], after[name]), name  # the input layer and the readout keep their init
    assert stats["layers"] == ["fc.1", "fc.2", "fc.3", "fc.4"] and stats["batch_size"] == 36
    assert stats["power"] == {"linear": p_used} and stats["clamped"] == 0 and stats["clamped_layers"] == {}
    assert stats["name"] == "svd_orth" and stats["seconds"] >= 0


@pytest.mark.parametrize("vslice", ["code", "haar", "identity"])
def test_each_layer_output_has_unit_frobenius_norm_and_the_slices_closed_forms(vslice):
    net, x, y = _mlp(depth=6, bias=True)
    stats = pretrain.pretrain(net, x, y, _node(f"pretrain.vslice={vslice}"), seed=0)
    inputs = _layer_inputs(net, list(net.fc[1:]), x[:36])
    for name, fc, h in zip(stats["layers"], net.fc[1:], inputs):
        with torch.no_grad():
            out = fc(h)  # the layer itself, bias included (zeroed)
        assert float(torch.linalg.matrix_norm(out)) == pytest.approx(1.0, rel=1e-12)
        gram = (out.T @ out).numpy()
        # p = 1 whitens: H Wᵀ = U V'ᵀ / c. An orthogonal V' (haar, identity) makes the outputs' columns orthonormal
        # up to the scale (Gram = I/d) where the input has full rank; the code's slice U[:d,:d] (n = 36 > d = 12) is
        # not orthogonal. (Measured: identity's outputs lose a feature per layer or two, the top singular direction
        # being one-signed, so later inputs are rank-deficient and clamped: {fc.2: 1, fc.3: 1, fc.4: 2, fc.5: 2}.)
        if name in stats["clamped_layers"]:
            assert vslice == "identity"
        elif vslice == "code":
            assert np.abs(gram - np.eye(12) / 12).max() > 1e-3
        else:
            np.testing.assert_allclose(gram, np.eye(12) / 12, atol=1e-12)


def test_haar_slices_come_from_the_replicates_pretrain_stream():
    weights = []
    for seed in (3, 3, 4):
        net, x, y = _mlp(depth=3)  # the same init and data each time
        pretrain.pretrain(net, x, y, _node("pretrain.vslice=haar"), seed=seed)
        weights.append(net.fc[1].weight.detach().clone())
    assert torch.equal(weights[0], weights[1]) and not torch.allclose(weights[0], weights[2])


def test_the_orthogonality_gap_at_initialisation_falls():
    # Spec ortho Fig 4 quick: SVD gap0 ≈ 0.37–0.43 against Xavier's 0.82–1.08 (width 64, a Gaussian mixture).
    # Here width 32, depth 20, gaussian inputs; measured on the init batch, seeds 0–3: SVD 0.27–0.33, Xavier
    # 1.06–1.10 (spectral gap of the logits); Eq. 2 on the last hidden layer likewise falls.
    for seed in (0, 1):
        gaps = {}
        for variant in ("none", "svd_orth"):
            net, x, y = _mlp(depth=20, width=32, dim=32, seed=seed)
            node = compose("train", [f"pretrain={variant}", "runtime.progress=false"]).pretrain
            pretrain.pretrain(net, x, y, node, seed=seed)
            with torch.no_grad():
                logits, layers = net.forward_features(x[:96])
            gaps[variant] = (float(metrics.ortho_gap_spectral(logits)),
                             float(metrics.orthogonality_gap(layers[-1]["post"])))
        assert gaps["svd_orth"][0] < 0.45 and gaps["none"][0] > 0.9
        assert gaps["svd_orth"][1] < gaps["none"][1] - 0.2


def test_the_eps_clamp_counts_dead_features_and_zero_eps_refuses_a_zero_input():
    net, x, y = _mlp(depth=3)
    x = x.abs()  # positive inputs: rows of W₀ that are all negative give features dead on every sample
    with torch.no_grad():
        net.fc[0].weight[:4] = -net.fc[0].weight[:4].abs()
    with torch.no_grad():
        dead = int((net.fc[0](x[:36]) <= 0).all(0).sum())  # dead on the whole init batch: ≥ 4 (measured: 5)
    stats = pretrain.pretrain(net, x, y, _node(), seed=0)
    assert dead >= 4 and stats["clamped_layers"] == {"fc.1": dead} and stats["clamped"] == dead  # s ≈ 0, clamped
    assert bool(torch.isfinite(net.fc[1].weight).all())
    net, x, y = _mlp(depth=3)
    x = x.abs()
    with torch.no_grad():
        net.fc[0].weight.copy_(-net.fc[0].weight.abs())  # every feature dead: fc_1's input is 0
    before = _state(net)
    with pytest.raises(FloatingPointError, match=r"fc\.1.*pretrain\.eps"):
        pretrain.pretrain(net, x, y, _node("pretrain.eps=0"), seed=0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


# ------------------------------------------------------------------------------------------------ convolutions


def _np_pad(x: np.ndarray, pads: tuple[int, int, int, int], mode: str) -> np.ndarray:
    """(left, right, top, bottom) padding of (B, C, H, W) in torch's padding modes."""
    left, right, top, bottom = pads
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=np_mode)


def _np_patches(xp: np.ndarray, k: int, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """Explicit loops: rows (sample, output row, output column), columns (channel, kernel row, kernel column)."""
    b, _, hp, wp = xp.shape
    span = dilation * (k - 1) + 1
    rows = []
    for n in range(b):
        for i in range(0, hp - span + 1, stride):
            for j in range(0, wp - span + 1, stride):
                rows.append(xp[n, :, i : i + span : dilation, j : j + span : dilation].reshape(-1))
    return np.stack(rows)


def _np_conv(xp: np.ndarray, w: np.ndarray, stride: int = 1, dilation: int = 1) -> np.ndarray:
    out, k = w.shape[0], w.shape[-1]
    b, hp = xp.shape[0], xp.shape[2]
    size = (hp - dilation * (k - 1) - 1) // stride + 1
    y = _np_patches(xp, k, stride, dilation) @ w.reshape(out, -1).T  # (B·P, out)
    return y.reshape(b, size, size, out).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_convnet_weights_equal_the_conv_codes_algorithm_in_float64(padding_mode):
    torch.manual_seed(0)
    net = ConvNet(2 * 5 * 5, width=4, depth=4, d_out=3, in_channels=2, norm="none", padding_mode=padding_mode)
    net.double()
    x = torch.randn(20, 2, 5, 5, dtype=torch.float64)
    before = _state(net)
    stats = pretrain.pretrain(net, x, None, _node("pretrain.batch_size=6"), seed=0)
    # the oracle (Figure_7 code, p = 1/2): per conv with in == out, P = unfold(pad(input)), W1 =
    # u[:wd,:wd] diag(s[:wd]^-1/2) vᵀ[:wd,:] scaled to ‖conv(input)‖_F = 1; the block is conv(relu(x)) (pre_act)
    h = _np_conv(_np_pad(np.maximum(x[:6].numpy(), 0), (1, 1, 1, 1), padding_mode), before["conv.0.weight"].numpy())
    for l in range(1, 4):
        xp = _np_pad(np.maximum(h, 0), (1, 1, 1, 1), padding_mode)
        w = _code_weight(_np_patches(xp, 3), 4, 0.5).reshape(4, 4, 3, 3)
        np.testing.assert_allclose(net.conv[l].weight.detach().numpy(), w, rtol=1e-9, atol=1e-12)
        h = _np_conv(xp, w)
        assert np.linalg.norm(h) == pytest.approx(1.0, rel=1e-12)
    assert torch.equal(before["conv.0.weight"], net.conv[0].weight) and torch.equal(before["readout.weight"],
                                                                                  net.readout.weight)
    assert stats["layers"] == ["conv.1", "conv.2", "conv.3"] and stats["power"] == {"conv": 0.5}


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_any_conv_model_stride_dilation_same_padding_and_biases():
    torch.manual_seed(1)
    convs = [nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 3, 3, stride=2, padding=1, padding_mode="circular"),
             nn.Conv2d(3, 3, 2, padding="same"), nn.Conv2d(3, 3, 3, dilation=2, padding=2, padding_mode="replicate")]
    net = nn.Sequential(convs[0], nn.ReLU(), convs[1], nn.ReLU(), convs[2], nn.Tanh(), convs[3], nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).double()
    x = torch.randn(12, 2, 7, 7, dtype=torch.float64)
    stats = pretrain.pretrain(net, x, None, _node("pretrain.batch_size=5", "pretrain.power=1.0"), seed=0)
    assert stats["layers"] == ["2", "4", "6"] and stats["power"] == {"conv": 1.0}
    inputs = _layer_inputs(net, convs[1:], x[:5])
    # oracle per conv: its padding (circular 1; 'same' for k = 2: 0 before, 1 after; replicate 2), its stride and
    # dilation, the input the model feeds it
    for conv, h, pads, stride, dilation in zip(convs[1:], inputs, ((1, 1, 1, 1), (0, 1, 0, 1), (2, 2, 2, 2)),
                                               (2, 1, 1), (1, 1, 2)):
        xp = _np_pad(h.numpy(), pads, conv.padding_mode)
        w = _code_weight(_np_patches(xp, conv.kernel_size[0], stride, dilation), 3, 1.0).reshape(conv.weight.shape)
        np.testing.assert_allclose(conv.weight.detach().numpy(), w, rtol=1e-9, atol=1e-12)
        assert torch.equal(conv.bias, torch.zeros(3, dtype=torch.float64))
        with torch.no_grad():
            assert float(torch.linalg.vector_norm(conv(h))) == pytest.approx(1.0, rel=1e-12)


# ------------------------------------------------------------------------------------------------ configuration


def test_the_config_composes_with_the_codes_defaults():
    node = _node()
    pretrain.validate(node)
    assert (node.power, node.vslice, node.eps, node.batch_size, node.sample) == (None, "code", 1e-6, None, "first")
    quiet = compose("train", ["pretrain=svd_orth", "runtime.progress=false"]).pretrain
    assert quiet.progress is False


@pytest.mark.parametrize(("override", "match"), [
    ("pretrain.power=0.7", r"^pretrain\.power=0\.7"),
    ("pretrain.power=true", r"^pretrain\.power=True"),
    ("pretrain.vslice=foo", r"^pretrain\.vslice='foo'.*choose one of: code, haar, identity"),
    ("pretrain.eps=-1", r"^pretrain\.eps=-1"),
    ("pretrain.eps=2", r"^pretrain\.eps=2"),
    ("pretrain.batch_size=1", r"^pretrain\.batch_size=1"),
    ("pretrain.sample=last", r"^pretrain\.sample='last'"),
    ("pretrain.progress=maybe", r"^pretrain\.progress='maybe'"),
    ("+pretrain.steps=3", r"^pretrain\.steps=3.*valid keys"),
])
def test_bad_values_raise_config_errors_naming_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        pretrain.validate(_node(override))


@pytest.mark.parametrize(("override", "match"), [
    ("pretrain.batch_size=8", r"^pretrain\.batch_size=8.*too small for fc\.1"),  # n < width: no d×d slice
    ("pretrain.batch_size=300", r"^pretrain\.batch_size=300.*256 training samples"),
])
def test_batches_impossible_for_the_model_or_data_raise_before_any_change(override, match):
    net, x, y = _mlp()
    before = _state(net)
    with pytest.raises(ConfigError, match=match):
        pretrain.pretrain(net, x, y, _node(override), seed=0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_models_without_targets_are_refused_naming_the_model():
    net, x, y = _mlp(depth=1)
    with pytest.raises(ConfigError, match=r"^pretrain\.name='svd_orth'.*MLP has none"):
        pretrain.pretrain(net, x, y, _node(), seed=0)
    cfg = compose("train", ["model=resmlp", "norm=none", "model.width=8", "model.depth=2", "data.dim=8"])
    res = make_model(cfg, 8, 10, 0)
    with pytest.raises(ConfigError, match=r"ResidualMLP has none"):
        pretrain.pretrain(res, torch.randn(30, 8, dtype=torch.float64), None, _node(), seed=0)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ConfigError, match=r"groups=2"):
        pretrain.pretrain(grouped, torch.randn(4, 4, 5, 5), None, _node(), seed=0)


def test_the_mode_is_restored():
    net, x, y = _mlp()
    net.eval()
    pretrain.pretrain(net, x, y, _node(), seed=0)
    assert not net.training


# ------------------------------------------------------------------------------------------------ engine


def test_a_training_run_initialises_before_step_0_and_notes_the_statistics(outputs):
    overrides = ["model=mlp", "norm=none", *XAVIER, "model.bias=false", "model.depth=3", "model.width=8",
                 "data.dim=8", "data.n_train=64", "data.n_test=16", "data.batch_size=16", "optim.epochs=1",
                 "pretrain=svd_orth", "runtime.progress=false"]
    cfg = compose("train", overrides)
    directory, outcome = results.execute(cfg, train.run)
    assert outcome == "done"
    stats = results.read_status(directory)["pretrain"]["0"]
    assert stats["name"] == "svd_orth" and stats["layers"] == ["fc.1", "fc.2"] and stats["batch_size"] == 24
    # step 0's loss is the svd-initialised network's: the same network re-initialised by hand gives it
    x, y, *_ = data.make_dataset(cfg.data, 0, "cpu", torch.float64)
    model = make_model(cfg, x.shape[1], 10, 0, "cpu", torch.float64).train()
    pretrain.pretrain(model, x, y, cfg.pretrain, 0)
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    items = probe.probe(model, *data.probe_batch(x, y, cfg.data.batch_size), spec)
    expected = {name: v.item() for layer, name, v in items if layer is None}["loss"]
    df = results.read_metrics(directory)
    assert df[(df.metric == "loss") & (df.step == 0)].value.item() == pytest.approx(expected, rel=1e-12)
    assert isinstance(model, MLP)

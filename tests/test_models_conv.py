"""VGG and ResNet for CIFAR: the shipped model configs train on every norm, have the spec's feature sizes and weight
layers, take the asymmetric init on conv kernels, reject bad options by key, and run through `bnexp train`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bnexp import cli, config, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MODELS, VGG, ResNet, build_model, init_weights

# config file → (input side, batch, last hidden size, weight layers, forward_features layers)
SHIPPED = {
    "vgg_mini": (16, 4, 64 * 2 * 2, 6 + 3, 6 + 1),
    "vgg19": (32, 4, 512, 16 + 3, 16 + 1),  # VGG19: 16 convs + 3 linears; 32 → 1 after five pools
    "resnet_mini": (16, 4, 4 * 16 * 2, 1 + 2 * 3 + 2 + 1, 2 + 1),
    "resnet50": (32, 2, 2048, 1 + 16 * 3 + 4 + 1, 16 + 1),  # stem + 16 bottlenecks × 3 + 4 projections + fc
}
NORMS = ["bn_torch", "bn_nocenter", "none"]


def _options(name: str) -> dict:
    """The keys of configs/model/<name>.yaml, as the trainer passes them (``name`` → the registry key)."""
    return OmegaConf.to_container(OmegaConf.load(config.config_dir() / "model" / f"{name}.yaml"))


def model_depth(name: str) -> int:
    return int(_options(name)["depth"])


def _build(name: str, norm: str = "bn_torch", side: int | None = None, **overrides) -> nn.Module:
    options = {**_options(name), **overrides}
    side = side or SHIPPED[name][0]
    return build_model(options.pop("name"), d_in=3 * side * side, d_out=10, norm=norm, act="relu", **options)


def _images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_forward_backward_every_norm(name, norm):
    torch.manual_seed(0)
    side, n, *_ = SHIPPED[name]
    model = _build(name, norm).train()
    loss = F.cross_entropy(model(_images(n, side)), torch.arange(n) % 10)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_features_and_weight_layers(name):
    torch.manual_seed(0)
    side, n, last, n_weights, n_layers = SHIPPED[name]
    model = _build(name).eval()  # eval: dropout off, so forward_features must equal forward exactly
    x = _images(n, side)
    logits, layers = model.forward_features(x)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    assert logits.shape == (n, 10) and len(layers) == n_layers == model_depth(name) + 1
    assert all(set(layer) == {"pre", "norm", "post"} for layer in layers)
    assert all(t.dim() == 2 and t.shape[0] == n for layer in layers for t in layer.values())
    assert layers[-1]["post"].shape == (n, last) and model.features_dim == last
    weights = model.weight_layers()
    assert len(weights) == n_weights
    # every Conv2d/Linear exactly once, the readout last
    assert {id(m) for m in weights} == {id(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert isinstance(weights[-1], nn.Linear) and weights[-1].out_features == 10
    assert isinstance(weights[0], nn.Conv2d) and weights[0].in_channels == 3
    # headless: forward returns the last hidden layer
    options = _options(name)
    headless = build_model(options.pop("name"), d_in=3 * side * side, **options).eval()
    headless.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(headless(x), layers[-1]["post"], rtol=0, atol=0)
    assert len(headless.weight_layers()) == n_weights - (3 if isinstance(model, VGG) else 1)


def test_vgg19_is_the_spec_architecture():
    model = _build("vgg19")
    assert [c.out_channels for c in model.conv] == [64, 64, 128, 128, *[256] * 4, *[512] * 8]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None for c in model.conv)
    assert [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.readout)] == [
        (512, 512), (512, 512), (512, 10)]
    assert model.drop1.p == model.drop2.p == 0.5
    assert sum(p.numel() for p in model.parameters()) == 20_565_834  # the reference code's VGG19 with 3 FC


def test_vgg_is_manual_composition():
    """conv → norm → relu, pool at M, flatten: written out with functional ops on cfg [4, M, 6, M]."""
    torch.manual_seed(0)
    model = VGG(3 * 8 * 8, 6, 2, 5, cfg=[4, "M", 6, "M"], norm="bn_nocenter", hidden=7).double().train()
    x = _images(5, 8).double()
    h = x
    for conv in model.conv:
        z = F.conv2d(h, conv.weight, conv.bias, padding=1)
        h = F.max_pool2d(torch.relu(z / (z.square().mean(dim=(0, 2, 3), keepdim=True) + 1e-5).sqrt()), 2)
    f = h.flatten(1)
    logits = model.readout(torch.relu(model.fc2(torch.relu(model.fc1(f)))))
    out, layers = model.forward_features(x)
    torch.testing.assert_close(out, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layers[-1]["post"], f, rtol=1e-12, atol=1e-12)
    assert f.shape == (5, 6 * 2 * 2) and [layer["pre"].shape[1] for layer in layers] == [4 * 64, 6 * 16, 24]


def test_resnet_block_is_manual_composition():
    """One bottleneck with a projection: σ(norm(conv(σ(norm(conv(σ(norm(conv x))))))) + norm(proj x))."""
    torch.manual_seed(0)
    model = ResNet(3 * 8 * 8, 4, 2, 5, blocks=[1, 1], norm="bn_nocenter").double().train()
    x = _images(6, 8).double()

    def bn(z):
        return z / (z.square().mean(dim=(0, 2, 3), keepdim=True) + 1e-5).sqrt()

    h = torch.relu(bn(F.conv2d(x, model.stem.weight, padding=1)))
    for block, stride in zip(model.blocks, (1, 2)):
        b = torch.relu(bn(F.conv2d(h, block.conv1.weight)))
        b = torch.relu(bn(F.conv2d(b, block.conv2.weight, stride=stride, padding=1)))
        b = bn(F.conv2d(b, block.conv3.weight))
        h = torch.relu(b + bn(F.conv2d(h, block.proj.weight, stride=stride)))
    out, layers = model.forward_features(x)
    torch.testing.assert_close(layers[-1]["post"], h.mean(dim=(2, 3)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, model.readout(h.mean(dim=(2, 3))), rtol=1e-12, atol=1e-12)
    assert h.shape == (6, 32, 4, 4) and layers[0]["post"].shape == (6, 16 * 8 * 8)


@pytest.mark.parametrize("name", ["vgg_mini", "resnet_mini"])
def test_asym_init_on_conv_kernels(name):
    """asym = U(0, 2/√fan_in) with fan_in = C_in·k·k: non-negative, mean 1/√fan_in within 6 standard errors."""
    model = _build(name)
    init_weights(model, "asym", generator=torch.Generator().manual_seed(0))
    convs = [m for m in model.weight_layers() if isinstance(m, nn.Conv2d)]
    assert {m.kernel_size for m in convs} >= ({(3, 3)} if name == "vgg_mini" else {(3, 3), (1, 1)})
    for m in model.weight_layers():
        w = m.weight.detach().double()
        fan_in = w[0].numel()  # in_channels · k · k (in_features for a Linear)
        assert (w >= 0).all() and w.max() <= 2 / math.sqrt(fan_in)
        se = 1 / math.sqrt(3 * fan_in * w.numel())  # std of U(0, 2/√f) is 1/√(3f)
        assert abs(w.mean().item() - 1 / math.sqrt(fan_in)) < 6 * se, m
    init_weights(model, "torch_default", generator=torch.Generator().manual_seed(0))
    for m in convs:
        bound = 1 / math.sqrt(m.weight[0].numel())
        assert m.weight.abs().max() <= bound and m.weight.min() < 0


def test_mixed_precision_and_channels_last():
    """bf16 CPU autocast (train mode, backward) and channels_last inputs give the same network."""
    for name in ("vgg_mini", "resnet_mini"):
        torch.manual_seed(0)
        model = _build(name, "bn_nocenter")
        x = _images(8, 16)
        ref = model.eval()(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), ref,
                                   rtol=1e-5, atol=1e-5)
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, layers = model.forward_features(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, torch.arange(8) % 10)
        assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
        assert layers[-1]["post"].shape == (8, model.features_dim)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(("cls", "kwargs", "key"), [
    (VGG, {"cfg": "X"}, "model.cfg"),
    (VGG, {"cfg": []}, "model.cfg"),
    (VGG, {"cfg": ["M"]}, "model.cfg"),
    (VGG, {"cfg": [16, "N", 64]}, "model.cfg"),
    (VGG, {"cfg": [16, 0, 64]}, "model.cfg"),
    (VGG, {"cfg": "mini", "depth": 5}, "model.depth"),
    (VGG, {"cfg": "mini", "width": 32}, "model.width"),
    (VGG, {"cfg": [64, "M", "M", "M", "M", "M"], "depth": 1}, "model.cfg"),  # 16 px pooled below 1×1
    (VGG, {"cfg": "mini", "d_in": 3 * 16 * 8}, "model.in_channels"),  # not square
    (VGG, {"cfg": "mini", "dropout": 1.5}, "model.dropout"),
    (VGG, {"cfg": "mini", "hidden": 0}, "model.hidden"),
    (ResNet, {"blocks": []}, "model.blocks"),
    (ResNet, {"blocks": [3, 0]}, "model.blocks"),
    (ResNet, {"blocks": "3463"}, "model.blocks"),
    (ResNet, {"blocks": [3, 4, 6, 3]}, "model.depth"),
    (ResNet, {"blocks": [1, 1], "in_channels": 5}, "model.in_channels"),
])
def test_bad_options_name_the_key(cls, kwargs, key):
    args = {"d_in": 3 * 16 * 16, "width": 64, "depth": 6 if cls is VGG else 2, "d_out": 10, **kwargs}
    with pytest.raises(ConfigError) as err:
        cls(**args)
    assert err.value.key == key
    assert key in str(err.value) and repr(err.value.value) in str(err.value)


def test_bad_cfg_lists_the_choices_and_bad_input_shape():
    with pytest.raises(ConfigError, match=r"model\.cfg='X'.*E, mini"):
        _build("vgg_mini", cfg="X")
    with pytest.raises(ValueError, match="expected images"):
        _build("resnet_mini")(torch.randn(2, 3 * 16 * 16))
    with pytest.raises(ValueError, match="expected images"):
        _build("vgg_mini")(torch.randn(2, 3, 8, 8))


def test_registry():
    assert MODELS["vgg"] is VGG and MODELS["resnet"] is ResNet


@pytest.mark.parametrize("name", ["vgg_mini", "resnet_mini", "vgg19", "resnet50"])
def test_composed_config_builds_through_make_model(name):
    side = SHIPPED[name][0]
    cfg = config.compose("train", [f"model={name}", "data=shifted_gaussian", f"data.shape=[3,{side},{side}]",
                                   "norm=bn_nocenter", "init=asym", "runtime.progress=false"])
    train.validate(cfg)
    model = train.make_model(cfg, 3 * side * side, cfg.data.n_classes, seed=3, dtype=torch.float32)
    assert isinstance(model, MODELS[cfg.model.name]) and model.features_dim == SHIPPED[name][2]
    assert all((m.weight >= 0).all() for m in model.weight_layers())  # init=asym reached every conv and linear
    again = train.make_model(cfg, 3 * side * side, cfg.data.n_classes, seed=3, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    bad = config.compose("train", [f"model={name}", "data=shifted_gaussian", "model.depth=3"])
    with pytest.raises(ConfigError, match=r"model\.depth"):
        train.make_model(bad, 3 * side * side, 10, seed=0)


def test_bnexp_train_runs_vgg_mini_end_to_end(outputs):
    code = cli.main(["train", "model=vgg_mini", "data=shifted_gaussian", "data.n_train=64", "data.n_test=16",
                     "data.batch_size=16", "optim.epochs=1", "dtype=float32", "runtime.progress=false"])
    assert code == 0
    (run,) = (outputs / "runs" / "adhoc").glob("*/metrics.csv")
    df = results.read_metrics(run.parent)
    assert {"train_loss", "train_acc", "test_acc", "rank_torch", "grad_norm"} <= set(df.metric)
    assert sorted(df[df.metric == "rank_torch"].step.unique()) == [0, 1]
    assert df[df.metric == "rank_torch"].layer.max() == 6  # 6 convs, then the flattened features (layer 6)
    assert df[df.metric == "grad_norm"].layer.nunique() == 9  # 6 convs + 3 linears
    assert df[df.metric == "rank_torch"].value.max() <= 16


def test_probe_layers_may_name_the_pooled_features():
    """VGG/ResNet forward_features have depth + 1 entries; probe.layers validates against that count."""
    base = ["model=vgg_mini", "data=prototypes", "data.shape=[3,16,16]", "optim.epochs=0"]
    cfg = config.compose("train", [*base, "probe.layers=[6]"])
    train.validate(cfg)
    assert train.feature_layers(cfg) == cfg.model.depth + 1 == 7
    with pytest.raises(ConfigError, match=r"probe\.layers"):
        train.validate(config.compose("train", [*base, "probe.layers=[7]"]))
    assert train.feature_layers(config.compose("train", ["model=mlp"])) == config.compose("train", []).model.depth

"""VGG and ResNet for CIFAR: the shipped model configs train on every norm, have the spec's feature sizes and weight
layers, take the asymmetric init on conv kernels, reject bad options by key, and run through `bnexp train`. The
ConvNet's flatten readout and the ortho paper's deep AlexNet (Table 3), against manual compositions."""

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
from bnexp.nn import ACTIVATIONS, MODELS, VGG, ConvNet, ResNet, build_model, init_weights
from bnexp.nn.alexnet import AlexNetDeep
from bnexp.nn.norms import NORMS as NORM_REGISTRY

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


# ------------------------------------------------------------------------------------------------ ConvNet readout


def test_convnet_flatten_readout_is_manual_composition():
    """The ortho Fig 7 quick net: Conv(3,16,3,p=1)+ReLU, extra × [Conv(16,16,3,p=1)+ReLU], Linear(16·8·8, 10)."""
    torch.manual_seed(0)
    model = ConvNet(3 * 8 * 8, 16, 1 + 2, 10, norm="none", act="relu", order="norm_act", padding_mode="zeros",
                    bias=True, readout="flatten").double()
    assert (model.readout.in_features, model.readout.out_features) == (16 * 8 * 8, 10)
    x = _images(5, 8).double()
    h = x
    for conv in model.conv:
        h = torch.relu(F.conv2d(h, conv.weight, conv.bias, padding=1))
    logits = h.reshape(5, -1) @ model.readout.weight.T + model.readout.bias
    out, layers = model.forward_features(x)
    torch.testing.assert_close(out, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model(x), logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layers[-1]["post"], h.flatten(1), rtol=1e-12, atol=1e-12)
    assert [type(m) for m in model.weight_layers()] == [nn.Conv2d] * 3 + [nn.Linear]
    loss = F.cross_entropy(out, torch.arange(5))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match="readout=flatten"):
        model(_images(2, 6).double())  # sized for 8×8 maps
    with pytest.raises(ConfigError, match=r"model\.readout='avg'.*flatten, gap"):
        ConvNet(3 * 8 * 8, 16, 2, 10, readout="avg")


def test_convnet_gap_readout_is_the_unchanged_default():
    """Without the key: the same parameters (same draws) and logits as readout=gap, = Linear(mean over H, W); the
    shipped config has no readout key, so existing convnet run keys stay."""
    torch.manual_seed(3)
    default = ConvNet(3 * 6 * 6, 5, 2, 4, norm="bn_torch").double()
    torch.manual_seed(3)
    gap = ConvNet(3 * 6 * 6, 5, 2, 4, norm="bn_torch", readout="gap").double()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), gap.state_dict().values()))
    x = _images(4, 6).double()
    out, layers = default.forward_features(x)
    torch.testing.assert_close(gap(x), out, rtol=0, atol=0)
    h = layers[-1]["post"].reshape(4, 5, 36).mean(2)
    torch.testing.assert_close(out, default.readout(h), rtol=1e-12, atol=1e-12)
    assert default.readout.in_features == 5
    assert "readout" not in config.compose("train", ["model=convnet"]).model


def test_convnet_flatten_through_the_trainer_on_mixture_images():
    cfg = config.compose("train", ["model=convnet", "+model.readout=flatten", "model.width=16", "model.depth=4",
                                   "model.order=norm_act", "model.padding_mode=zeros", "model.bias=true", "norm=none",
                                   "data=mixture", "data.shape=[3,8,8]", "data.batch_size=30",
                                   "init=xavier_uniform", "init.gain=1.4142135623730951", "runtime.progress=false"])
    train.validate(cfg)
    model = train.make_model(cfg, 3 * 8 * 8, cfg.data.n_classes, seed=0, dtype=torch.float32)
    assert model.readout.in_features == 16 * 8 * 8 and len(model.conv) == 4
    from bnexp import data

    x, *_ = data.make_dataset(cfg.data, 0)
    assert model(x[:30]).shape == (30, 10)


# ------------------------------------------------------------------------------------------------ alexnet_deep


def _alexnet(depth: int = 2, side: int = 32, **kwargs) -> AlexNetDeep:
    return build_model("alexnet_deep", d_in=3 * side * side, width=256, depth=depth, d_out=10,
                       **{"norm": "none", "act": "relu", **kwargs})


def test_alexnet_deep_is_the_code_architecture():
    """Spec ortho §3 Fig 7 "Code": the five stem convs (first stride 2), depth × Conv(256, 256), 1024 → 4096 → 4096
    → 10, kernel 3 and padding 1 everywhere, every bias zero; the parameter count in closed form."""
    torch.manual_seed(0)
    model = _alexnet(depth=2)
    stem = [(3, 64, 2), (64, 192, 1), (192, 192, 1), (192, 256, 1), (256, 256, 1)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in model.conv] == [*stem, (256, 256, 1), (256, 256, 1)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in model.conv)
    assert [(m.in_features, m.out_features) for m in (model.fc1, model.fc2, model.readout)] == [
        (1024, 4096), (4096, 4096), (4096, 10)]
    assert model.drop1.p == model.drop2.p == 0.5
    layers = model.weight_layers()
    assert all(m.bias is not None and not m.bias.any() for m in layers)
    convs = sum(9 * a * b + b for a, b, _ in stem) + 2 * (9 * 256 * 256 + 256)
    linears = (1024 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == convs + linears
    with torch.device("meta"):  # the paper's nets: 20 and 80 convolutions
        assert [len(_alexnet(depth=d).conv) for d in (15, 75)] == [20, 80]


def test_alexnet_deep_features_and_weight_layers():
    torch.manual_seed(0)
    model = _alexnet(depth=2).eval()  # eval: dropout off
    x = _images(3, 32)
    logits, layers = model.forward_features(x)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    assert logits.shape == (3, 10) and model.features_dim == 1024
    assert len(layers) == 2 + AlexNetDeep.EXTRA_FEATURE_LAYERS == 5 + 2 + 1
    assert [layer["pre"].shape[1] for layer in layers] == [64 * 16 * 16, 192 * 8 * 8, *[c * 4 * 4 for c in
                                                           (192, 256, 256, 256, 256)], 1024]
    assert [layer["post"].shape[1] for layer in layers] == [64 * 8 * 8, 192 * 4 * 4, *[c * 4 * 4 for c in
                                                            (192, 256, 256, 256, 256)], 1024]
    weights = model.weight_layers()
    assert weights == [*model.conv, model.fc1, model.fc2, model.readout] and len(weights) == 5 + 2 + 3
    assert {id(m) for m in weights} == {id(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    headless = build_model("alexnet_deep", d_in=3 * 32 * 32, width=256, depth=2, norm="none").eval()
    headless.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(headless(x), layers[-1]["post"], rtol=0, atol=0)
    assert len(headless.weight_layers()) == 5 + 2


@pytest.mark.parametrize("norm", ["none", "bn_nocenter"])
def test_alexnet_deep_is_manual_composition_float64(norm):
    """conv → pool → relu (×2), conv → relu, conv, conv → relu, depth × [conv → relu → norm], pool → relu, flatten,
    the classifier; written out with functional ops, float64, then a backward with finite gradients."""
    torch.manual_seed(0)
    model = _alexnet(depth=2, norm=norm).double()
    init_weights(model, "xavier_uniform", gain=math.sqrt(2), generator=torch.Generator().manual_seed(0))
    for m in model.weight_layers():  # nonzero biases, so that the composition checks where they enter
        nn.init.uniform_(m.bias, -0.1, 0.1)
    x = _images(6, 32).double()

    def bn(z):
        return z if norm == "none" else z / (z.square().mean(dim=(0, 2, 3), keepdim=True) + 1e-5).sqrt()

    def conv(i, h):
        c = model.conv[i]
        return F.conv2d(h, c.weight, c.bias, stride=c.stride, padding=1)

    h = torch.relu(F.max_pool2d(conv(0, x), 2))
    h = torch.relu(F.max_pool2d(conv(1, h), 2))
    h = torch.relu(conv(2, h))
    h = torch.relu(conv(4, conv(3, h)))
    for i in (5, 6):
        h = bn(torch.relu(conv(i, h)))
    f = torch.relu(F.max_pool2d(h, 2)).flatten(1)
    logits = model.readout(torch.relu(model.fc2(torch.relu(model.fc1(f)))))
    model.train()
    model.drop1.eval(), model.drop2.eval()  # the norm on batch statistics, dropout off
    out, layers = model.forward_features(x)
    torch.testing.assert_close(out, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layers[-1]["post"], f, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layers[-2]["post"], h.flatten(1), rtol=1e-12, atol=1e-12)
    assert f.shape == (6, 1024)
    model.train()
    out = model(x)
    assert not torch.allclose(out, model(x))  # dropout is active in train mode, as in the code
    F.cross_entropy(out, torch.arange(6)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.any(), pname


@pytest.mark.parametrize(("norm", "act"), [*[(n, "relu") for n in sorted(NORM_REGISTRY)],
                                           *[("none", a) for a in sorted(ACTIVATIONS) if a != "relu"]])
def test_alexnet_deep_forward_backward_every_norm_and_activation(norm, act):
    """What tests/test_mlp.py runs for the generic models, on images the fixed architecture can take (16×16)."""
    torch.manual_seed(0)
    # eps > 0: a norm after σ = ReLU meets channels that are 0 on the whole batch (0/0 with bn_center's eps = 0);
    # none and weightnorm (an identity slot, the weights normalised) have no eps
    options = {"norm_kwargs": {"eps": 1e-5}} if norm not in ("none", "weightnorm") else {}
    model = _alexnet(depth=1, side=16, norm=norm, act=act, dropout=0.0, **options).train()
    logits, layers = model.forward_features(_images(8, 16))
    torch.testing.assert_close(logits, model(_images(8, 16)), rtol=0, atol=0)
    assert logits.shape == (8, 10) and layers[-1]["post"].shape == (8, 256)  # 16 px → 8 → 4 → 2 → 1
    loss = F.cross_entropy(logits, torch.arange(8) % 10)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"width": 128}, "model.width"),
    ({"side": 8}, "model.in_channels"),  # 8 px: pooled below 1×1
    ({"dropout": 1.5}, "model.dropout"),
    ({"depth": 0}, "model.depth"),
])
def test_alexnet_deep_bad_options_name_the_key(kwargs, key):
    args = {"depth": 2, "side": 32, **kwargs}
    width = args.pop("width", 256)
    with pytest.raises(ConfigError) as err:
        build_model("alexnet_deep", d_in=3 * args.pop("side") ** 2, width=width, d_out=10, **args)
    assert err.value.key == key
    with pytest.raises(ConfigError, match=r"model\.in_channels"):
        build_model("alexnet_deep", d_in=3 * 32 * 16, width=256, depth=1)  # not square
    with pytest.raises(ValueError, match="expected images"):
        build_model("alexnet_deep", d_in=3 * 16 * 16, width=256, depth=1)(_images(2, 32))


def test_alexnet_deep_config_composes_and_validates():
    cfg = config.compose("train", ["model=alexnet_deep", "data=uniform_images", "norm=none", "init=xavier_uniform",
                                   "init.gain=1.4142135623730951", "data.batch_size=30", "optim.lr=0.001",
                                   "runtime.progress=false"])
    train.validate(cfg)
    assert MODELS["alexnet_deep"] is AlexNetDeep and cfg.model.depth == 15
    assert train.feature_layers(cfg) == 15 + 6  # 20 convs and the flattened features
    train.validate(config.compose("train", ["model=alexnet_deep", "data=uniform_images", "probe.layers=[20]"]))
    with pytest.raises(ConfigError, match=r"probe\.layers"):
        train.validate(config.compose("train", ["model=alexnet_deep", "data=uniform_images", "probe.layers=[21]"]))
    small = config.compose("train", ["model=alexnet_deep", "model.depth=1", "data=uniform_images", "norm=none",
                                     "init=xavier_uniform", "init.gain=1.4142135623730951"])
    model = train.make_model(small, 3 * 32 * 32, small.data.n_classes, seed=0, dtype=torch.float32)
    assert model.features_dim == 1024 and len(model.conv) == 6
    for m in model.weight_layers():
        fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0][0].numel()
        bound = math.sqrt(2) * math.sqrt(6 / (fan_in + fan_out))  # Xavier-uniform, gain √2 (spec §1.10)
        assert 0.9 * bound < float(m.weight.detach().abs().max()) <= bound
        assert not m.bias.any()  # the code's zero biases survive the init


def test_bnexp_train_runs_alexnet_deep_end_to_end(outputs):
    code = cli.main(["train", "model=alexnet_deep", "model.depth=1", "norm=none", "data=mixture",
                     "data.shape=[3,16,16]", "data.n_train=40", "data.n_test=10", "data.batch_size=20",
                     "optim.epochs=1", "dtype=float32", "+probe.set_metrics=[ortho_gap_spectral]",
                     "runtime.progress=false"])
    assert code == 0
    (run,) = (outputs / "runs" / "adhoc").glob("*/metrics.csv")
    df = results.read_metrics(run.parent)
    assert sorted(df[df.metric == "rank_torch"].layer.unique()) == list(range(5 + 1 + 1))  # 6 convs, then f
    assert df[df.metric == "grad_norm"].layer.nunique() == 6 + 3
    assert sorted(df[df.metric == "set_ortho_gap_spectral"].layer.unique()) == [6, 7]  # f and the logits

"""Rank-maximising pre-training (rank paper Alg 1): the two objectives against float64 oracles, that both released
variants raise r(H_L) of a deep vanilla ReLU MLP, what layerwise may touch, the no-op, seeding and the config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bnexp import data, metrics
from bnexp.config import compose
from bnexp.engines.train import make_model
from bnexp.errors import ConfigError
from bnexp.training import pretrain


def _setup(variant: str, *overrides: str, depth: int = 12, width: int = 32, seed: int = 0, scale: int = 1,
           init: str = "xavier_normal", model: str = "mlp", dtype=torch.float64):
    """A vanilla ReLU network and ``prototypes`` data (n_train 256) built as the trainer builds them, and the
    ``pretrain`` node of ``pretrain=<variant>`` with the overrides."""
    cfg = compose("train", [f"model={model}", "norm=none", f"init={init}", f"model.depth={depth}",
                            f"model.width={width}", "data=prototypes", f"data.scale={scale}", "data.n_train=256",
                            "data.n_test=8", "data.batch_size=32", f"pretrain={variant}",
                            *([] if variant == "none" else ["pretrain.progress=false"]), *overrides])
    x, y, *_ = data.make_dataset(cfg.data, seed, dtype=dtype)
    net = make_model(cfg, x[0].numel(), int(cfg.data.n_classes), seed, dtype=dtype)
    return net, x, y, cfg.pretrain


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


# ------------------------------------------------------------------------------------------------ objectives


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (16, 16)])
def test_objectives_equal_their_float64_oracles(shape):
    rng = np.random.default_rng(0)
    h = rng.standard_normal(shape) + 0.5  # a shared mean, like post-ReLU features
    n = shape[0]
    gram = h @ h.T  # N×N, code_fig_4
    m = h.T @ h / n  # d×d, code_fig_6
    # the identity behind the two codes: ‖G‖_F / Tr G = ‖M‖_F / Tr M = r^{-1/2}
    inv_sqrt = np.linalg.norm(gram) / np.trace(gram)
    assert inv_sqrt == pytest.approx(np.linalg.norm(m) / np.trace(m), rel=1e-12)
    inv = np.trace(m @ m) / np.trace(m) ** 2
    assert inv == pytest.approx(inv_sqrt**2, rel=1e-12)
    t = torch.from_numpy(h)
    assert float(pretrain.inv_sqrt_rank(t)) == pytest.approx(inv_sqrt, rel=1e-12)
    assert float(pretrain.inv_rank(t)) == pytest.approx(inv, rel=1e-12)
    assert float(pretrain.inv_rank(t)) == pytest.approx(1 / float(metrics.rank_lower_bound(t)), rel=1e-12)
    # float32 in the model's dtype, at an activation scale whose squares underflow without the peak guard
    small = (t * 1e-25).float()
    assert float(pretrain.inv_rank(small)) == pytest.approx(inv, rel=1e-5)
    assert float(pretrain.inv_sqrt_rank(small)) == pytest.approx(inv_sqrt, rel=1e-5)


def test_objective_gradients_equal_the_unguarded_formula():
    # The detached peak division is exact for these 0-homogeneous functions: same gradient as the plain formula.
    h = torch.randn(6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    for fn, plain in ((pretrain.inv_rank, lambda a: (a.mT @ a).square().sum() / (a.square().sum() ** 2)),
                      (pretrain.inv_sqrt_rank, lambda a: torch.linalg.matrix_norm(a @ a.mT) / a.square().sum())):
        (g,) = torch.autograd.grad(fn(3.0 * h), h)
        (ref,) = torch.autograd.grad(plain(3.0 * h), h)
        torch.testing.assert_close(g, ref, rtol=1e-10, atol=1e-14)


def test_zero_features_give_zero_objective_and_zero_gradient():
    h = torch.zeros(4, 3, requires_grad=True)
    for fn in (pretrain.inv_rank, pretrain.inv_sqrt_rank):
        value = fn(h)
        (g,) = torch.autograd.grad(value, h)
        assert float(value.detach()) == 0.0 and torch.equal(g, torch.zeros_like(g))


# ------------------------------------------------------------------------------------------------ variants


def test_end_to_end_raises_the_rank_of_the_last_hidden_layer():
    # Spec Fig 4 quick, smaller: 50 minibatches × 10 SGD steps at lr 1e-3 on r^{-1/2} of the post-ReLU H_L,
    # glorot_normal and raw 0–255 pixel values as the CIFAR code (with [0, 1] inputs the signal of a deep
    # vanilla net is already below the biases' constant at H_L and the objective's gradient vanishes).
    net, x, y, cfg = _setup("end_to_end", "pretrain.minibatches=50", "pretrain.steps=10", scale=255)
    stats = pretrain.pretrain(net, x, y, cfg, seed=0)
    assert stats["name"] == "end_to_end" and stats["steps"] == 500 and stats["last_layer"] == 11
    assert stats["targets"] == [{"layer": 11, "r_before": stats["r_before"], "r_after": stats["r_after"]}]
    assert stats["r_before"] < 1.2 and stats["r_after"] > stats["r_before"] + 1.0  # measured: 1.07 → 5.99
    # r_after is r(H_L) on the first pre-training minibatch (the reference batch), post-activation
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(data.derive_seed(0, "pretrain")))
    with torch.no_grad():
        _, layers = net.forward_features(x[order[:64]])
    assert stats["r_after"] == pytest.approx(float(metrics.rank_lower_bound(layers[-1]["post"])), rel=1e-12)


def test_layerwise_raises_rank_and_updates_only_weights_up_to_the_last_target():
    net, x, y, cfg = _setup("layerwise")  # paper's 25 iterations, every 4th layer: targets 4 and 8 of 12
    before = _state(net)
    stats = pretrain.pretrain(net, x, y, cfg, seed=0)
    assert [t["layer"] for t in stats["targets"]] == [4, 8] and stats["steps"] == 2 * 25
    for t in stats["targets"]:
        assert t["r_after"] > t["r_before"] + 0.5  # measured: 1.17 → 3.38 and 1.01 → 3.89
    assert stats["r_after"] > stats["r_before"] + 0.1  # r(H_L), layer 11's pre-activation: measured 1.00 → 1.31
    after = net.state_dict()
    for name, value in before.items():
        layer = int(name.split(".")[1]) if name.startswith("fc.") else None
        changed = not torch.equal(value, after[name])
        if name.endswith(".weight") and layer is not None and layer <= 8:
            assert changed, name  # the weights feeding the targets move
        else:
            assert not changed, name  # biases, later layers, the readout: bit-identical


def test_layerwise_fixed_batch_is_the_first_training_samples_and_cumulative_is_two_passes():
    net, x, y, cfg = _setup("layerwise", "pretrain.iters=3", "pretrain.cumulative=true", "pretrain.prior_iters=2",
                            depth=9)
    twin = make_model(compose("train", ["norm=none", "init=xavier_normal", "model.depth=9", "model.width=32"]),
                      x[0].numel(), 10, 0, dtype=torch.float64)
    twin.load_state_dict(net.state_dict())
    stats = pretrain.pretrain(net, x, y, cfg, seed=0)
    assert stats["steps"] == 2 * (2 + 3)
    # the same two passes by hand: 2 steps per target, then 3 steps per target
    for iters in (2, 3):
        node = OmegaConf.merge(cfg, {"iters": iters, "cumulative": False})
        pretrain.pretrain(twin, x, y, node, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
    # the objective saw the first batch_size training samples: r_after reproduces on x[:32]
    with torch.no_grad():
        _, layers = net.forward_features(x[:32])
    assert stats["r_after"] == pytest.approx(float(metrics.rank_lower_bound(layers[-1]["pre"])), rel=1e-12)


def test_none_leaves_the_model_bit_identical():
    net, x, y, cfg = _setup("none")
    before = _state(net)
    assert pretrain.pretrain(net, x, y, cfg, seed=0) == {"name": "none", "steps": 0}
    assert pretrain.pretrain(net, x, y, None, seed=0) == {"name": "none", "steps": 0}  # a config without the group
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(("variant", "overrides"), [
    ("end_to_end", ("pretrain.minibatches=3", "pretrain.steps=2")),
    ("layerwise", ("pretrain.iters=2", "pretrain.sample=random")),
])
def test_the_same_seed_gives_bit_identical_weights(variant, overrides):
    runs = []
    for seed in (3, 3, 4):
        net, x, y, cfg = _setup(variant, *overrides, depth=6, scale=255)  # the same init and data each time
        pretrain.pretrain(net, x, y, cfg, seed=seed)
        runs.append(list(net.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2]))  # another seed: other batches


@pytest.mark.parametrize("model", ["resmlp", "convnet"])
def test_other_architectures_with_forward_features(model):
    extra = ("model.in_channels=1", "model.order=norm_act") if model == "convnet" else ("model.gamma=inf",)
    for variant, more in (("end_to_end", ("pretrain.minibatches=2", "pretrain.steps=2")),
                          ("layerwise", ("pretrain.iters=2", "pretrain.layers=[1,3]"))):
        net, x, y, cfg = _setup(variant, *extra, *more, model=model, depth=4, width=8, init="torch_default")
        net.eval()
        stats = pretrain.pretrain(net, x, y, cfg, seed=0)
        assert stats["steps"] == 4 and np.isfinite(stats["r_after"]) and stats["last_layer"] == 3
        assert not net.training  # the caller's mode is restored


# ------------------------------------------------------------------------------------------------ configuration


def test_the_config_group_composes_and_validates_with_the_codes_values():
    for variant in ("none", "end_to_end", "layerwise"):
        pretrain.validate(compose("train", [f"pretrain={variant}"]).pretrain)
    e2e = compose("train", ["pretrain=end_to_end"]).pretrain
    assert (e2e.minibatches, e2e.batch_size, e2e.steps, e2e.lr, e2e.layer) == (1000, 64, 40, 1e-3, -1)
    assert e2e.point == "post"
    lw = compose("train", ["pretrain=layerwise"]).pretrain
    assert (lw.iters, lw.cumulative, lw.step, lw.batch_size, lw.every, lw.point) == (25, False, 0.1, 32, 4, "pre")
    quiet = compose("train", ["pretrain=layerwise", "runtime.progress=false"]).pretrain
    assert e2e.progress is True and quiet.progress is False  # follows runtime.progress


@pytest.mark.parametrize(("variant", "override", "match"), [
    ("none", "pretrain.name=foo", r"^pretrain\.name='foo'.*choose one of: end_to_end, layerwise, none"),
    ("layerwise", "pretrain.iters=-1", r"^pretrain\.iters=-1"),
    ("layerwise", "pretrain.iters=2.5", r"^pretrain\.iters=2\.5"),
    ("layerwise", "pretrain.step=0", r"^pretrain\.step=0"),
    ("layerwise", "pretrain.point=mid", r"^pretrain\.point='mid'.*choose one of: norm, post, pre"),
    ("layerwise", "pretrain.sample=last", r"^pretrain\.sample='last'"),
    ("layerwise", "pretrain.layers=[]", r"^pretrain\.layers"),
    ("layerwise", "+pretrain.iter=3", r"^pretrain\.iter=3.*valid keys"),
    ("end_to_end", "pretrain.lr=-1", r"^pretrain\.lr=-1"),
    ("end_to_end", "pretrain.batch_size=1", r"^pretrain\.batch_size=1"),
    ("end_to_end", "pretrain.layer=last", r"^pretrain\.layer='last'"),
    ("end_to_end", "pretrain.progress=maybe", r"^pretrain\.progress='maybe'"),
])
def test_bad_values_raise_config_errors_naming_the_key(variant, override, match):
    with pytest.raises(ConfigError, match=match):
        pretrain.validate(compose("train", [f"pretrain={variant}", override]).pretrain)


@pytest.mark.parametrize(("variant", "override", "match"), [
    ("layerwise", "pretrain.every=12", r"^pretrain\.every=12.*selects no hidden layer"),
    ("layerwise", "pretrain.layers=[2,12]", r"^pretrain\.layers"),
    ("layerwise", "pretrain.batch_size=300", r"^pretrain\.batch_size=300.*256 training samples"),
    ("end_to_end", "pretrain.layer=12", r"^pretrain\.layer=12.*\[-12, 11\]"),
])
def test_values_impossible_for_the_model_or_data_raise_before_any_step(variant, override, match):
    net, x, y, cfg = _setup(variant, override)
    before = _state(net)
    with pytest.raises(ConfigError, match=match):
        pretrain.pretrain(net, x, y, cfg, seed=0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())

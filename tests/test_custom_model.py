"""``model=custom``: any importable factory's model trained through the CLI with per-epoch probe rows, its weights
kept or redrawn by ``init``, every bad ``model.target`` (and the groups that do not apply) refused before any run,
and torchvision's resnet18 measured per stage through ``bnexp.measure``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import bnexp
from bnexp import cli, config, data, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MODELS, custom

FACTORY = '''
import torch
from torch import nn


def mlp(d_in=8, width=16, classes=10):
    return nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width),
                         nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, classes))


def reads_values(**kwargs):
    if torch.ones(2).sum().item() != 2.0:  # a tensor's value: impossible on the meta device
        raise RuntimeError("unreachable")
    return mlp(**kwargs)


def returns_dict(**kwargs):
    return {"not": "a module"}


SIZE = 3
'''
MODULE = "bnexp_user_models"
TINY = ["data.dim=8", "data.n_train=64", "data.n_test=32", "data.batch_size=16", "runtime.progress=false"]


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A module of model factories, importable as ``bnexp_user_models`` from a fresh directory on sys.path."""
    (tmp_path / f"{MODULE}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    yield sys.modules.get(MODULE) or __import__(MODULE)
    sys.modules.pop(MODULE, None)


def custom_args(target: str = "mlp", *extra: str, kwargs: str = "{d_in:8}") -> list[str]:
    return ["model=custom", f"model.target={MODULE}:{target}", f"model.kwargs={kwargs}", *TINY, *extra]


def bnexp_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


# ------------------------------------------------------------------------------------------------ training


def test_trains_through_the_cli_with_per_epoch_probe_rows(factory, outputs, capsys):
    overrides = custom_args("mlp", "optim.epochs=2", "optim.lr=0.05", "dtype=float32",
                            "probe.metrics=[rank_torch,soft_rank]")
    code, text = bnexp_cli(capsys, "train", *overrides)
    assert code == 0, text
    (run_json,) = sorted((outputs / "runs" / "adhoc").glob("*/run.json"))
    df = results.read_metrics(run_json.parent)
    assert sorted(df.step.unique()) == [0, 1, 2]
    for step in (0, 1, 2):
        at = df[df.step == step]
        for name in ("rank_torch", "soft_rank"):  # the two hooked ReLUs, layers 0 and 1
            assert sorted(at[at.metric == name].layer) == [0, 1]
        assert sorted(at[at.metric == "grad_norm"].layer) == [0, 1, 2]  # the three Linear weights
        assert {"loss", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(at.metric)
    assert np.isfinite(df.value).all()

    # step 0 is bnexp.measure of the same network (the factory's weights, seed 0) on the run's probe batch
    cfg = config.compose("train", overrides)
    x_train, y_train, *_ = data.make_dataset(cfg.data, 0, "cpu", torch.float32)
    model = train.make_model(cfg, 8, 10, 0, "cpu", torch.float32).train()
    ref = bnexp.measure(model.model, data.probe_batch(x_train, y_train, 16), metrics=["rank_torch", "soft_rank"],
                        grad_norms=True)
    at0 = df[df.step == 0]
    for name in ("rank_torch", "soft_rank", "grad_norm", "loss"):
        np.testing.assert_allclose(at0[at0.metric == name].value, ref[ref.metric == name].value, rtol=1e-5)
    assert ref[ref.metric == "soft_rank"].module.tolist() == ["2", "5"]
    # run.json names the module behind each layer index, as bnexp.measure does
    modules = json.loads(run_json.read_text())["modules"]
    assert modules == {"layers": ["2", "5"], "weights": ["0", "3", "6"]}


def test_init_time_seeds_are_probed_one_at_a_time(factory):
    writer = results.MemoryWriter()
    train.run(config.compose("train", custom_args("mlp", "n_seeds=2")), writer)
    seeds = {row[0] for row in writer.rows if row[3] == "rank_torch"}
    assert seeds == {0, 1} and "seed_batching" not in writer.info
    assert writer.info["modules"] == {"layers": ["2", "5"], "weights": ["0", "3", "6"]}


def test_bnexp_own_models_note_no_module_names():
    writer = results.MemoryWriter()
    train.run(config.compose("train", [*TINY, "model.depth=2", "model.width=8"]), writer)
    assert "modules" not in writer.info


def test_torch_default_keeps_the_factorys_weights_and_other_inits_redraw(factory):
    with torch.random.fork_rng():
        torch.manual_seed(data.derive_seed(3, "model"))  # the replicate's model stream, as the engine seeds it
        ref = factory.mlp(d_in=8).double()
    kept = train.make_model(config.compose("train", custom_args()), 8, 10, 3)
    assert all(torch.equal(a, b) for a, b in zip(kept.model.state_dict().values(), ref.state_dict().values()))
    zeroed = train.make_model(config.compose("train", custom_args("mlp", "+init.zero_bias=true")), 8, 10, 3)
    assert all(torch.equal(zeroed.model[i].weight, ref[i].weight) for i in (0, 3, 6))
    assert all((zeroed.model[i].bias == 0).all() for i in (0, 3, 6))
    ortho = train.make_model(config.compose("train", custom_args("mlp", "init=orthogonal")), 8, 10, 3)
    w = ortho.model[3].weight.detach()
    assert not torch.equal(w, ref[3].weight)
    torch.testing.assert_close(w @ w.T, torch.eye(16, dtype=w.dtype), atol=1e-12, rtol=0)


def test_a_factory_that_cannot_build_on_the_meta_device_still_validates(factory):
    cfg = config.compose("train", custom_args("reads_values"))
    train.validate(cfg)
    assert isinstance(train.make_model(cfg, 8, 10, 0), custom.CustomModel)


def test_logits_of_the_wrong_size_fail_at_the_first_probe(factory):
    cfg = config.compose("train", custom_args(kwargs="{d_in:8,classes:3}"))
    with pytest.raises(ConfigError, match=r"model.kwargs.*\(16, 3\).*data.n_classes = 10"):
        train.run(cfg, results.MemoryWriter())


def test_custom_is_registered_and_ignores_the_primary_configs_defaults():
    assert MODELS.get("custom") is custom.CustomModel
    defaults = config.compose("train", [])
    assert (defaults.norm.name, defaults.act.name) == (custom.DEFAULT_NORM, custom.DEFAULT_ACT)


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(("args", "needles"), [
    (["model.target=bnexp_user_models"], ["model.target='bnexp_user_models'", "package.module:factory"]),
    ([f"model.target={MODULE}_missing:mlp"], [f"model.target='{MODULE}_missing:mlp'", "does not import",
                                              f"No module named '{MODULE}_missing'"]),
    ([f"model.target={MODULE}:nope"], [f"model.target='{MODULE}:nope'", "no attribute 'nope'", "mlp"]),
    ([f"model.target={MODULE}:returns_dict"], ["model.target", "returned dict", "not an nn.Module"]),
    ([f"model.target={MODULE}:SIZE"], ["model.target", "not callable"]),
    (["model.target=null"], ["model.target=None", "required"]),
    (["+model.kwargs.bogus=1"], ["model.target", "TypeError", "bogus"]),
    (["norm=none"], ["norm.name='none'", "does not apply", "bn_torch"]),
    (["act=tanh"], ["act.name='tanh'", "does not apply", "relu"]),
    (["+model.width=8"], ["model.width=8", "model.kwargs"]),
    (["model.modules=[fc9]"], ["model.modules='fc9'", "0, 1, 2"]),
    (["model.modules=[nn.Conv2d]"], ["model.modules='nn.Conv2d'", "Conv2d"]),
    (["init.gain=2"], ["init.gain=2", "torch_default"]),
    (["runtime.batch_seeds=true"], ["runtime.batch_seeds=True"]),
])
def test_bad_custom_configs_fail_before_any_run(factory, outputs, capsys, args, needles):
    base = [a for a in custom_args() if not (args[0].startswith("model.target") and a.startswith("model.target"))]
    code, text = bnexp_cli(capsys, "train", *base, *args)
    assert code == 2, text
    for needle in needles:
        assert needle in text
    assert not (outputs / "runs").exists()


def test_a_sweep_with_a_bad_target_runs_nothing(factory, outputs, capsys):
    code, text = bnexp_cli(capsys, "sweep", *custom_args("nope"), "seed=0,1", "optim.epochs=1")
    assert code == 2 and "no attribute 'nope'" in text
    assert not (outputs / "runs").exists()


# ------------------------------------------------------------------------------------------------ torchvision


def test_resnet18_stages_through_measure():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    x = torch.randn(16, 3, 32, 32)
    stages = ["layer1", "layer2", "layer3", "layer4"]
    df = bnexp.measure(net, x, metrics=["soft_rank", "rank_torch"], modules=stages)
    assert df[df.metric == "soft_rank"].module.tolist() == stages
    assert df[df.metric == "soft_rank"].layer.tolist() == [0, 1, 2, 3] and len(df) == 8
    assert df.value.between(1, 16).all()  # at most n = 16 samples
    with torch.no_grad():
        last = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
    h = last.flatten(1).double().numpy()  # (16, 512·1·1)
    lam = np.linalg.eigvalsh(h.T @ h / 16)
    assert df[(df.metric == "soft_rank") & (df.layer == 3)].value.item() == np.sum(lam * 512 / lam.sum() >= 0.5)


def test_the_batch_norm_batch_rules_do_not_apply_to_a_factorys_model(factory):
    """norm=bn_torch is custom's placeholder (the factory builds its own layers): a batch of one is not refused."""
    train.validate(config.compose("train", custom_args("mlp", "data.batch_size=1", "optim.epochs=0")))

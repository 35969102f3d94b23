"""Datasets: shapes, dtypes, determinism per seed, a learnable teacher, the probe batch and minibatches."""

from __future__ import annotations

import pytest
import torch

from bnexp import data
from bnexp.config import compose
from bnexp.errors import ConfigError
from bnexp.training import optim


def _data_cfg(*overrides: str):
    return compose("train", list(overrides)).data


def test_gaussian_shapes_and_dtypes():
    cfg = _data_cfg("data.dim=7", "data.n_train=50", "data.n_test=20", "data.n_classes=4")
    x_train, y_train, x_test, y_test = data.make_dataset(cfg, seed=3)
    assert x_train.shape == (50, 7) and x_test.shape == (20, 7)
    assert y_train.shape == (50,) and y_test.shape == (20,)
    assert x_train.dtype == x_test.dtype == torch.float32
    assert y_train.dtype == y_test.dtype == torch.long
    assert int(y_train.min()) >= 0 and int(max(y_train.max(), y_test.max())) < 4
    x64, *_ = data.make_dataset(cfg, seed=3, dtype=torch.float64)
    assert x64.dtype == torch.float64
    torch.testing.assert_close(x64.float(), x_train, rtol=0, atol=0)  # same draw, cast afterwards


def test_gaussian_inputs_are_standard_normal():
    cfg = _data_cfg("data.dim=20", "data.n_train=4000", "data.n_test=10")
    x, *_ = data.make_dataset(cfg, seed=0, dtype=torch.float64)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.var()) - 1) < 0.03  # 80 000 draws: se ≈ 0.004, 0.005


def test_determinism_per_seed_and_data_seed():
    cfg = _data_cfg("data.n_train=64", "data.n_test=16")
    a, b, c = (data.make_dataset(cfg, seed=s) for s in (5, 5, 6))
    for t_a, t_b in zip(a, b):
        assert torch.equal(t_a, t_b)
    assert not torch.equal(a[0], c[0])
    fixed = _data_cfg("data.n_train=64", "data.n_test=16", "data.seed=11")  # same data for every replicate
    assert torch.equal(data.make_dataset(fixed, seed=0)[0], data.make_dataset(fixed, seed=1)[0])
    assert torch.equal(data.make_dataset(fixed, seed=0)[0], data.make_dataset(cfg, seed=11)[0])


def _linear_test_accuracy(x_train, y_train, x_test, y_test, n_classes: int) -> float:
    """Test accuracy of multinomial logistic regression fitted by full-batch L-BFGS (float64)."""
    w = torch.zeros(x_train.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ w + b, y_train) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return ((x_test @ w + b).argmax(1) == y_test).double().mean().item()


def test_teacher_labels_are_learnable_by_a_linear_model():
    cfg = _data_cfg()  # dim 32, 10 classes, 1024 train, 256 test
    x_train, y_train, x_test, y_test = data.make_dataset(cfg, seed=0)
    x_train, x_test = x_train.double(), x_test.double()
    assert len(set(y_train.tolist())) == cfg.n_classes  # every class occurs
    # linear teacher: a linear model generalises far above chance (0.1)
    assert _linear_test_accuracy(x_train, y_train, x_test, y_test, cfg.n_classes) > 0.75
    # the labels are a function of x, not noise: shuffled labels are not learnable
    shuffled = y_train[torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))]
    assert _linear_test_accuracy(x_train, shuffled, x_test, y_test, cfg.n_classes) < 0.3


def test_unknown_dataset_and_bad_keys_name_the_key():
    with pytest.raises(ConfigError, match=r"data\.name='imagenet'.*gaussian"):
        data.make_dataset(_data_cfg("data.name=imagenet"), seed=0)
    with pytest.raises(ConfigError, match=r"data\.dim"):
        data.validate(_data_cfg("data.dim=0"))
    with pytest.raises(ConfigError, match=r"data\.n_classes"):
        data.validate(_data_cfg("data.n_classes=1"))
    with pytest.raises(ConfigError, match=r"^data\.batch_size=65.*n_train"):
        data.validate(_data_cfg("data.n_train=64", "data.batch_size=65"))


def test_probe_batch_is_the_first_training_samples():
    cfg = _data_cfg("data.n_train=40", "data.n_test=8")
    x_train, y_train, *_ = data.make_dataset(cfg, seed=0)
    x, y = data.probe_batch(x_train, y_train, 16)
    assert torch.equal(x, x_train[:16]) and torch.equal(y, y_train[:16])
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        data.probe_batch(x_train, y_train, 41)


def test_minibatches_cover_a_seeded_permutation():
    def epoch(drop_last=False):
        return list(optim.epoch_batches(10, 4, torch.Generator().manual_seed(0), "cpu", "shuffle", 3, drop_last))

    batches = epoch()
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = epoch()
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    dropped = epoch(drop_last=True)
    assert [len(b) for b in dropped] == [4, 4]


def test_derived_streams_are_distinct():
    seeds = {data.derive_seed(s, stream) for s in range(3) for stream in data.STREAMS}
    assert len(seeds) == 3 * len(data.STREAMS)
    assert data.derive_seed(0, "data") == data.derive_seed(0, "data")

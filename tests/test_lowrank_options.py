"""The low-rank spec's options beside its defaults (spec lowrank §1.2, §1.5, M3): ``probe.dist_normalize`` (the
weight distance relative to the previous weights), ``probe.bn_eval=full_train_stats`` (eval-mode passes with the
statistics of the whole training set) and the early stop on low training accuracy (``optim.stop_below_acc``), each
against an independent computation, in one run and in a stacked group."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnexp import cli, config, data, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.runtime import DTYPES
from bnexp.training import measures, optim
from bnexp.training.loop import Trainer

SMALL = ["model.depth=3", "model.width=16", "data.dim=8", "data.n_train=64", "data.n_test=16",
         "data.batch_size=12", "runtime.progress=false", "probe.metrics=[rank_lower_bound]"]


def _cfg(*overrides: str):
    return config.compose("train", [*SMALL, *overrides])


def _trainer(cfg) -> Trainer:
    device, dtype = torch.device("cpu"), DTYPES[cfg.dtype]
    networks = train.Networks(cfg, device, dtype, "off")
    split = data.make_dataset(cfg.data, 0, device, dtype)
    return Trainer(networks.model(0, split[0][0].numel()), split, networks.probe_batch(*split[:2]), seed=0,
                   lr=cfg.optim.lr, optim=optim.OptimSpec.from_cfg(cfg.optim, cfg.data), spec=train.probe_spec(cfg),
                   batch_size=12)


def _value(rows, metric: str, step: int) -> float:
    found = [r[4] for r in rows if r[3] == metric and r[1] == step and r[2] is None]
    assert len(found) == 1, (metric, step, found)
    return found[0]


def test_dist_normalize_divides_each_distance_by_the_previous_weights():
    cfg = _cfg("optim.epochs=1", "optim.lr=0.05", "+probe.weight_ranks=true", "+probe.dist_normalize=true")
    trainer = _trainer(cfg)
    trainer.initial_rows()
    before = [m.weight.detach().double().numpy().copy() for m in trainer.model.weight_layers()]
    logged: list = []
    trainer.train_epoch(logged.extend)
    after = [m.weight.detach().double().numpy() for m in trainer.model.weight_layers()]
    want = np.mean([np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(after, before)])
    assert _value(logged, "weight_distance", 1) == pytest.approx(want, rel=1e-9)
    plain = np.mean([np.linalg.norm(a - b) for a, b in zip(after, before)])
    assert not math.isclose(want, plain, rel_tol=1e-3)  # the option changes the number


def test_full_train_stats_evaluates_with_the_whole_training_sets_batch_statistics():
    """Oracle: every BN layer's eval statistics are the mean and (biased, as BN's train mode) variance of its
    input over the full training set, found layer by layer with the earlier layers normalised by theirs; the
    running statistics (what training uses) are untouched by measuring."""
    cfg = _cfg("optim.epochs=1", "optim.lr=0.05", "+probe.train_pass=true", "+probe.bn_eval=full_train_stats")
    trainer = _trainer(cfg)
    logged: list = []
    trainer.train_epoch(logged.extend)
    model = trainer.model
    running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    # the oracle: propagate the full training set, normalising each BN input by its own full-set statistics
    h = trainer.x_train.flatten(1)
    with torch.no_grad():  # MLP-BN: fc[ℓ] → norm[ℓ] → ReLU, then the readout
        for fc, bn in zip(model.fc, model.norm):
            h = F.linear(h, fc.weight, fc.bias)
            mean, var = h.mean(0), h.var(0, unbiased=False)
            h = torch.relu((h - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias)
        h = F.linear(h, model.readout.weight, model.readout.bias)
    loss = F.cross_entropy(h, trainer.y_train).item()
    assert _value(logged, "train_full_loss", 1) == pytest.approx(loss, rel=1e-9)
    with_running, _ = measures.evaluate(model, trainer.x_train, trainer.y_train, 12)
    assert not math.isclose(with_running.item(), loss, rel_tol=1e-6)  # the option changes the number
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in running.items())


def test_early_stop_ends_a_run_whose_training_accuracy_stays_low(tmp_path, monkeypatch):
    """stop_below_acc = 1 holds at every log point: after stop_after = 1 epoch, the run ends at the
    stop_patience = 2nd such log point (epoch 3) and run.json says so; without the option it trains all 5 epochs."""
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path))
    stop = ["+optim.stop_below_acc=1.0", "+optim.stop_patience=2", "+optim.stop_after=1"]
    directory, _ = results.execute(_cfg("optim.epochs=5", "+probe.train_pass=true", *stop), train.run)
    rows = results.read_metrics(directory)
    assert rows["step"].max() == 3
    info = json.loads((directory / "run.json").read_text())
    assert info["status"] == "done" and info["stopped_early"] == {"0": 3} and "diverged" not in info
    full, _ = results.execute(_cfg("optim.epochs=5", "+probe.train_pass=true"), train.run)
    assert results.read_metrics(full)["step"].max() == 5
    kept = results.read_metrics(full)
    np.testing.assert_allclose(rows["value"], kept[kept["step"] <= 3]["value"], rtol=1e-12)


def test_early_stop_in_a_stacked_group_ends_only_that_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path))
    # a tiny learning rate keeps the training accuracy at chance on this task; the other run learns
    args = ["sweep", "+exp=lowrank_batch", "data=prototypes", "data.shape=[1,6,6]", "data.normalize=none",
            "data.n_train=53", "data.n_test=20", "data.seed=0", "model.width=16", "model.depth=3", "dtype=float64",
            "optim.epochs=6", "optim.milestones=[5]", "data.batch_size=8", "runtime.progress=false",
            "optim.lr=1e-9,0.05", "+optim.stop_below_acc=0.5", "+optim.stop_patience=2", "+optim.stop_after=2"]
    assert cli.main(args) == 0
    assert "2 runs as one stacked model" in capsys.readouterr().out
    ends = {}
    for directory in sorted((tmp_path / "runs").glob("*/*")):
        cfg = json.loads((directory / "run.json").read_text())
        rows = results.read_metrics(directory)
        ends[float(results.load_runs([directory])["optim.lr"].iloc[0])] = (int(rows["step"].max()),
                                                                         cfg.get("stopped_early"))
    assert ends == {1e-9: (4, {"0": 4}), 0.05: (6, None)}


def test_the_options_are_validated_with_their_names():
    for overrides, key in [(["+probe.bn_eval=batch"], "probe.bn_eval"),
                           (["+probe.dist_normalize=maybe"], "probe.dist_normalize"),
                           (["+optim.stop_below_acc=2"], "optim.stop_below_acc"),
                           (["+optim.stop_patience=0"], "optim.stop_patience"),
                           (["+optim.stop_after=-1"], "optim.stop_after")]:
        with pytest.raises(ConfigError) as err:
            train.validate(_cfg("optim.epochs=1", *overrides))
        assert err.value.key == key, overrides

"""Sweeps whose runs differ only in learning rate and weight decay train as one stacked model
(``bnexp.engines.train_group``) and write what one-at-a-time runs write: the same metrics.csv rows and spectra
within float rounding (CPU, float64), divergence at the same log point with nan ranks, checkpoints that resume as
a group or one run at a time; runs that cannot stack are left to the per-run path."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bnexp import cli, config, results
from bnexp.engines import train_group
from bnexp.errors import ConfigError
from bnexp.training.stacked import StackedBatches

SETUP = ["data=prototypes", "data.shape=[1,6,6]", "data.normalize=none", "data.n_train=53", "data.n_test=20",
         "data.seed=0", "model.width=16", "model.depth=3", "probe.spectra=true", "optim.epochs=4",
         "optim.milestones=[2,3]", "dtype=float64", "data.batch_size=8", "runtime.progress=false"]
GRID = ["optim.lr=0.05,0.1", "optim.weight_decay=0,0.001"]
TOL = 1e-8


def _sweep(capsys, monkeypatch, outputs: Path, *args: str) -> str:
    monkeypatch.setenv("BNEXP_OUTPUTS", str(outputs))
    code = cli.main(["sweep", *args])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    return out.out + out.err


def _runs(outputs: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((outputs / "runs").glob("*/*")) if (p / "metrics.csv").exists()}


def _assert_same_runs(got: Path, want: Path, tol: float = TOL) -> None:
    """Every run of ``want`` is in ``got`` with the same rows, values within ``tol`` (relative) and spectra."""
    runs, reference = _runs(got), _runs(want)
    assert set(runs) == set(reference) and reference
    for key, directory in reference.items():
        a, b = results.read_metrics(runs[key]), results.read_metrics(directory)
        assert a[["seed", "step", "layer", "metric"]].astype(str).equals(b[["seed", "step", "layer", "metric"]]
                                                                        .astype(str)), key
        np.testing.assert_allclose(a["value"], b["value"], rtol=tol, atol=tol, err_msg=key)
        files = sorted(p.relative_to(directory) for p in directory.rglob("spectra/**/*.npz"))
        assert files == sorted(p.relative_to(runs[key]) for p in runs[key].rglob("spectra/**/*.npz"))
        for name in files:
            with np.load(runs[key] / name) as x, np.load(directory / name) as y:
                assert list(x) == list(y)
                for k in x:
                    np.testing.assert_allclose(x[k], y[k], rtol=tol, atol=tol)


@pytest.mark.parametrize("exp", ["lowrank_batch", "lowrank_res_batch"])
def test_a_stacked_sweep_writes_the_runs_of_one_at_a_time(exp, tmp_path, capsys, monkeypatch):
    out = _sweep(capsys, monkeypatch, tmp_path / "stacked", f"+exp={exp}", *SETUP, *GRID)
    assert "4 runs as one stacked model" in out
    _sweep(capsys, monkeypatch, tmp_path / "alone", f"+exp={exp}", *SETUP, *GRID, "runtime.stack=false")
    _assert_same_runs(tmp_path / "stacked", tmp_path / "alone")
    for directory in _runs(tmp_path / "stacked").values():
        info = json.loads((directory / "run.json").read_text())
        assert info["status"] == "done" and info["stacked"].startswith("one model of 4 runs")
        assert not (directory / results.CHECKPOINT).exists()
        cfg = OmegaConf.load(directory / "config.yaml")  # its own point of the grid, not the whole sweep
        words = shlex.split(info["command"])
        assert words[:2] == ["bnexp", "train"] and f"optim.lr={cfg.optim.lr:g}" in words
        assert f"optim.weight_decay={cfg.optim.weight_decay:g}" in words and "optim.lr=0.05,0.1" not in words
    for directory in _runs(tmp_path / "alone").values():
        assert "stacked" not in json.loads((directory / "run.json").read_text())


def test_a_diverging_run_of_a_group_ends_where_it_would_alone(tmp_path, capsys, monkeypatch):
    # MLP without BN, squared error: lr = 1000 overflows within the first epoch, lr = 0.05 trains on
    grid = ["+exp=lowrank_mlp_batch", *SETUP, "optim.loss=mse", "optim.lr=0.05,1000", "optim.weight_decay=0.001"]
    _sweep(capsys, monkeypatch, tmp_path / "stacked", *grid)
    _sweep(capsys, monkeypatch, tmp_path / "alone", *grid, "runtime.stack=false")
    stacked, alone = _runs(tmp_path / "stacked"), _runs(tmp_path / "alone")
    diverged = []
    for key in alone:
        a, b = results.read_metrics(stacked[key]), results.read_metrics(alone[key])
        info = json.loads((stacked[key] / "run.json").read_text())
        assert info.get("diverged") == json.loads((alone[key] / "run.json").read_text()).get("diverged")
        assert a[["step", "metric"]].astype(str).equals(b[["step", "metric"]].astype(str))  # it stops there too
        if not info.get("diverged"):
            np.testing.assert_allclose(a["value"], b["value"], rtol=TOL, atol=TOL)
            continue
        diverged.append(key)
        last = int(a["step"].max())
        assert info["diverged_at"] == {"0": last}
        for df in (a, b):
            at = df[df["step"] == last]
            assert at.loc[at["metric"] == "diverged", "value"].tolist() == [1.0]
            assert at.loc[at["metric"].isin(["weight_rank", "avg_rank"]), "value"].isna().all()
        before_a, before_b = a[a["step"] < last], b[b["step"] < last]
        np.testing.assert_allclose(before_a["value"], before_b["value"], rtol=TOL, atol=TOL)
    assert len(diverged) == 1


def _interrupt_after(monkeypatch, epochs: int) -> None:
    """Make the stacked minibatch stream raise KeyboardInterrupt when epoch ``epochs + 1`` starts (a killed
    process: nothing of ours catches it)."""
    calls = {"n": 0}
    original = StackedBatches.epoch

    def epoch(self):
        calls["n"] += 1
        if calls["n"] > epochs:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(StackedBatches, "epoch", epoch)


@pytest.mark.parametrize("then", ["stacked", "alone"])
def test_a_killed_group_resumes_as_a_group_or_run_by_run(then, tmp_path, capsys, monkeypatch):
    args = ["+exp=lowrank_batch", *SETUP, *GRID]
    _sweep(capsys, monkeypatch, tmp_path / "whole", *args)
    killed = tmp_path / "killed"
    monkeypatch.setenv("BNEXP_OUTPUTS", str(killed))
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        assert cli.main(["sweep", *args]) == 130  # Ctrl-C: one line, the runs left to resume
    assert "bnexp: interrupted." in capsys.readouterr().err
    for directory in _runs(killed).values():
        assert (directory / results.CHECKPOINT).exists()
        assert results.read_metrics(directory)["step"].max() == 2
    out = _sweep(capsys, monkeypatch, killed, *args, *(["runtime.stack=false"] if then == "alone" else []))
    assert ("4 runs as one stacked model" in out) == (then == "stacked")
    _assert_same_runs(killed, tmp_path / "whole")
    for directory in _runs(killed).values():
        assert json.loads((directory / "run.json").read_text())["resumed"].startswith("from replicate 0")


def _cfg(*overrides: str):
    return config.compose("train", ["+exp=lowrank_batch", *SETUP, *overrides])


def test_plan_groups_only_runs_that_differ_in_lr_weight_decay_or_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path))
    cfgs = [_cfg(f"optim.lr={lr}", f"data.batch_size={b}") for b in (8, 16) for lr in (0.05, 0.1)]
    cfgs += [_cfg("seed=3"), _cfg("n_seeds=2"), _cfg("optim.lr_grid=[0.1,0.2]"), _cfg("optim.name=adam"),
             _cfg("model=convnet"), _cfg("norm=bn_theory"), _cfg("runtime.stack=false", "optim.lr=0.2")]
    groups = train_group.plan([(c, results.run_dir(c)) for c in cfgs])
    sizes = [[(m.data.batch_size, m.optim.lr, m.seed) for m, _ in g] for g in groups]
    # data.seed is set, so seed 3 joins the batch-size-8 runs; everything else stays alone
    assert sizes == [[(8, 0.05, 0), (8, 0.1, 0), (8, 0.1, 3)], [(16, 0.05, 0), (16, 0.1, 0)]]
    assert train_group.unstackable(_cfg("n_seeds=2")).startswith("n_seeds")
    assert train_group.unstackable(_cfg("optim.name=adam")) == "optim.name=adam"
    assert train_group.unstackable(_cfg("runtime.stack=false")) == "runtime.stack=false"
    # without data.seed the data depends on the seed: other seeds are other groups
    loose = [_cfg("~data.seed", f"seed={s}") for s in (0, 1)]
    assert train_group.plan([(c, results.run_dir(c)) for c in loose]) == []


def test_a_bad_stack_setting_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path))
    assert cli.main(["sweep", "+exp=lowrank_batch", *SETUP, *GRID, "runtime.stack=maybe"]) != 0
    assert re.search(r"runtime\.stack.*maybe.*auto or false", capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match=r"runtime\.stack"):
        train_group.check_stack(_cfg("runtime.stack=1"))


def test_the_stacked_rows_load_like_any_run(tmp_path, capsys, monkeypatch):
    _sweep(capsys, monkeypatch, tmp_path, "+exp=lowrank_batch", *SETUP, *GRID)
    frame = results.load_runs(list(_runs(tmp_path).values()))
    assert isinstance(frame, pd.DataFrame) and frame["run"].nunique() == 4
    assert set(frame["run.stacked"].dropna().str[:18]) == {"one model of 4 run"}


def test_the_paper_cost_estimate_groups_runs_as_a_sweep_would():
    """``make cost-lowrank`` (scripts/cost_lowrank.py): fig2's 18 paper-scale runs are six groups of three (one
    per batch size, the learning rates stacked), and a group's measured step costs give its hours."""
    spec = importlib.util.spec_from_file_location("cost_lowrank", Path(__file__).parents[1] / "scripts/cost_lowrank.py")
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    from bnexp import figures

    fig = next(f for f in figures.all_figures() if f.id == "lowrank/fig2")
    groups = cost.figure_groups(fig)
    assert sorted((int(g[0].data.batch_size), len(g)) for g in groups) == [(b, 3) for b in (4, 8, 16, 32, 64, 128)]
    row = cost.group_cost(groups[-1], seconds=0.01)
    assert row["R"] == 3 and row["d_in"] == 3072 and row["steps"] == 500 * math.ceil(50_000 / row["B"])
    assert row["loop_step"] > 0 and row["stacked_step"] > 0 and row["loop_h"] > row["steps"] * row["loop_step"] / 3600

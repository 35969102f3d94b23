"""The `bnexp` command end to end: runs land in the results layout, sweeps skip finished runs, launchers work,
and bad input fails before any work with a message naming the key and the valid choices."""

from __future__ import annotations

import json
import shlex

import pytest
from omegaconf import OmegaConf

from bnexp import cli, config, engines, results

TINY = ["chain.width=8", "chain.depth=20", "chain.measure_every=5", "runtime.progress=false"]


def runs(root, exp="adhoc"):
    return sorted((root / "runs" / exp).glob("*/run.json"))


def bnexp(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_simulate_writes_a_run_and_skips_it_the_second_time(outputs, capsys):
    code, text = bnexp(capsys, "simulate", *TINY)
    assert code == 0 and "done" in text
    (run_json,) = runs(outputs)
    df = results.read_metrics(run_json.parent)
    assert list(df.columns) == list(results.COLUMNS)
    assert sorted(df.step.unique()) == [0, 5, 10, 15, 20] and set(df.metric) == {"soft_rank", "rank_lower_bound"}
    code, text = bnexp(capsys, "simulate", *TINY)
    assert code == 0 and "already done" in text and len(runs(outputs)) == 1


def test_sweep_runs_an_adhoc_grid_and_skips_finished_runs(outputs, capsys):
    code, text = bnexp(capsys, "sweep", *TINY[1:], "chain.width=4,8", "chain.gamma=1,inf", "engine=simulate")
    assert code == 0 and "4 run(s), 0 already done" in text
    assert len(runs(outputs)) == 4
    code, text = bnexp(capsys, "sweep", *TINY[1:], "chain.width=4,8,16", "chain.gamma=1,inf", "engine=simulate")
    assert "6 run(s), 4 already done" in text and len(runs(outputs)) == 6
    df = results.load("adhoc")
    assert set(df["chain.width"]) == {4, 8, 16} and set(df["chain.gamma"]) == {1.0, float("inf")}


def test_run_json_records_the_command_that_makes_that_run_again(outputs, capsys):
    """``bnexp <engine> <the run's own overrides>``: a sweep's job records its point of the grid, and running
    the recorded command finds the run done."""
    code, text = bnexp(capsys, "sweep", *TINY[1:], "chain.width=4,8", "engine=simulate")
    assert code == 0, text
    for run_json in runs(outputs):
        info = json.loads(run_json.read_text())
        words = shlex.split(info["command"])
        width = next(w for w in words if w.startswith("chain.width="))
        assert words[:2] == ["bnexp", "simulate"] and width in ("chain.width=4", "chain.width=8")
        assert width == f"chain.width={OmegaConf.load(run_json.parent / 'config.yaml').chain.width}"
        code, text = bnexp(capsys, *words[1:])
        assert code == 0 and "already done" in text and run_json.parent.name in text


def test_experiment_grid_is_declared_in_its_config(outputs, capsys):
    # markov_rank_tau sweeps norm × γ (4 runs); shrink the chain so it takes a second
    code, text = bnexp(capsys, "sweep", "+exp=markov_rank_tau", "chain.depth=30", "n_seeds=2", "runtime.progress=false")
    assert code == 0 and "4 run(s)" in text
    df = results.load("markov_rank_tau")
    assert set(df["chain.norm"]) == {"bn_theory", "none"} and set(df["chain.gamma"]) == {0.1, 1.0}


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers(outputs, capsys, launcher):
    code, _ = bnexp(capsys, "sweep", *TINY[1:], "chain.width=4,8", "engine=simulate", f"hydra/launcher={launcher}")
    assert code == 0
    assert all(results.read_status(p.parent)["status"] == "done" for p in runs(outputs))
    assert len(runs(outputs)) == 2


@pytest.mark.parametrize(("args", "needles"), [
    (["chain.width=0"], ["chain.width=0"]),
    (["chain.depth=0"], ["chain.depth=0"]),
    (["chain.tau=1.5"], ["chain.tau=1.5"]),
    (["chain.norm=bn_foo"], ["chain.norm='bn_foo'", "bn_theory", "none"]),
    (["chain.batch=64", "chain.metrics=[isometry_gap]"], ["chain.batch", "isometry_gap"]),
    (["chain.widht=3"], ["widht"]),
    (["runtime.threads=0"], ["runtime.threads=0", "auto"]),
    (["runtime.device=gpu"], ["runtime.device='gpu'", "cuda"]),
])
def test_simulate_bad_values_fail_before_any_work(outputs, capsys, args, needles):
    code, text = bnexp(capsys, "simulate", *TINY, *args)
    assert code == 2
    for needle in needles:
        assert needle in text
    assert not (outputs / "runs").exists()


@pytest.mark.parametrize(("args", "needles"), [
    (["norm=bn_foo"], ["norm", "bn_foo", "bn_torch", "bn_nocenter"]),
    (["model.depth=0"], ["model.depth"]),
    (["model.width=0"], ["model.width"]),
    (["+exp=no_such_exp"], ["no_such_exp", "rank_width"]),
    (["runtime.threads=-1"], ["runtime.threads=-1"]),
    (["optim.momentum=1"], ["optim.momentum=1", "[0, 1)"]),
    (["+model.dpeth=3"], ["model.dpeth=3", "did you mean model.depth?"]),
    (["data.batch_size=1"], ["data.batch_size=1", "norm=bn_torch", "one sample"]),
])
def test_train_bad_values_fail_before_any_work(outputs, capsys, args, needles):
    code, text = bnexp(capsys, "train", *args)
    assert code == 2
    for needle in needles:
        assert needle in text
    assert not (outputs / "runs").exists()


def test_a_sweep_with_one_bad_value_runs_nothing(outputs, capsys):
    code, text = bnexp(capsys, "sweep", "engine=simulate", *TINY[1:], "chain.width=8,0")
    assert code == 2 and "chain.width=0" in text
    assert not (outputs / "runs").exists()


def test_engine_mismatch_is_explained(capsys):
    code, text = bnexp(capsys, "train", "+exp=rank_width")
    assert code == 2 and "bnexp simulate" in text


def test_plot_with_missing_runs_names_them_and_the_command(outputs, capsys):
    code, text = bnexp(capsys, "plot", "fig3", "--scale", "smoke")
    assert code == 1
    assert "rank/fig3 at scale 'smoke' lacks" in text
    assert "bnexp reproduce rank/fig3 --scale smoke" in text and "bnexp sweep +exp=rank_width" in text


def test_unknown_figure_lists_the_figures(capsys):
    code, text = bnexp(capsys, "plot", "fig99")
    assert code == 2 and "rank/fig3" in text and "markov/table1" in text
    assert text.index("rank/fig2,") < text.index("rank/fig3,") < text.index("rank/fig10,")  # natural order
    code, text = bnexp(capsys, "reproduce", "ortho/Fig1", "--dry-run")
    assert code == 2 and "did you mean ortho/fig1?" in text


def test_jobs_must_be_a_positive_count(capsys):
    code, text = bnexp(capsys, "reproduce", "fig2", "--launcher", "joblib", "--jobs", "0", "--dry-run")
    assert code == 2 and "--jobs=0" in text and "≥ 1" in text


def test_plot_at_a_scale_without_runs_points_to_the_scale_that_has_them(outputs, capsys):
    code, text = bnexp(capsys, "reproduce", "fig2", "--scale", "smoke")
    assert code == 0, text
    code, text = bnexp(capsys, "plot", "fig2")  # the default scale, quick: no runs
    assert code == 1 and "Its runs at scale smoke are all done: bnexp plot rank/fig2 --scale smoke" in text


def test_report_of_an_empty_outputs_folder_says_nothing_was_reproduced(outputs, capsys):
    code, text = bnexp(capsys, "report")
    assert code == 0 and f"no figure has been reproduced under {outputs}" in text


def test_figures_lists_every_figure(capsys):
    code, text = bnexp(capsys, "figures", "--scale", "smoke")
    assert code == 0
    for fig_id in ("rank/fig2", "rank/fig3", "rank/fig8", "rank/fig9", "markov/fig1", "markov/fig4",
                   "markov/table1", "markov/fig2", "markov/fig3", "markov/fig9", "markov/fig10"):
        assert fig_id in text


def test_train_at_init_writes_per_layer_rows(outputs, capsys):
    code, _ = bnexp(capsys, "train", "model.depth=3", "model.width=16", "data.dim=16", "data.batch_size=16",
                    "runtime.progress=false")
    assert code == 0
    (run_json,) = runs(outputs)
    df = results.read_metrics(run_json.parent)
    assert (df.step == 0).all()
    assert {"rank_torch", "soft_rank", "rank_lower_bound", "grad_norm"} <= set(df.metric)
    assert df[df.metric == "rank_torch"].layer.nunique() == 3


@pytest.mark.parametrize("exp", config.experiments())
def test_experiment_grid_is_the_sweep_hydra_runs(exp):
    """What bnexp validates and prints (``experiment_grid``) is what Hydra's sweeper will expand, inherited
    sweeps of parent experiments included; likewise for the engine."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config.config_dir()), version_base="1.3"):
        engine = engines.for_experiment(exp)
        cfg = compose(config_name=engine.config_name, overrides=[f"+exp={exp}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.engine == engine.name  # the engine bnexp chooses is the one the composed config says
    params = cfg.hydra.sweeper.params or {}
    assert {k: [v.strip() for v in str(val).split(",")] for k, val in params.items()} == config.experiment_grid(exp)


def test_an_error_inside_a_run_is_one_clear_line(outputs, capsys, monkeypatch):
    """A ConfigError raised while a run executes (e.g. dataset files missing and no network) is reported like
    one found before any work: one line naming the key, exit status 2, no Hydra traceback."""
    from bnexp.engines import train
    from bnexp.errors import ConfigError

    def missing(cfg, writer):
        raise ConfigError("data.root", "nowhere", "a directory holding the dataset files")

    monkeypatch.setattr(train, "run", missing)
    assert cli.main(["train", "model.depth=2", "optim.epochs=0", "n_seeds=1"]) == 2
    err = capsys.readouterr().err
    assert "bnexp: error: data.root='nowhere'" in err and "Traceback" not in err


def test_an_lr_search_says_which_rate_it_kept(outputs, capsys):
    code, text = bnexp(capsys, "train", "model.depth=2", "model.width=8", "data.n_train=64", "data.n_test=32",
                       "optim.epochs=1", "optim.lr_grid=[0.001,0.1]")
    assert code == 0, text
    (run_json,) = runs(outputs)
    chosen = json.loads(run_json.read_text())["lr_search"]["0"]["chosen_lr"]
    assert f"[bnexp] adhoc seed=0: lr {chosen:g} of [0.001, 0.1], final train loss" in text

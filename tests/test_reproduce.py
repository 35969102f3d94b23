"""`bnexp reproduce` tries every figure whatever happens to the others, and says what happened to each: a figure
whose run fails, whose claim fails or whose plot raises is `failed`, a figure whose dataset is not on the
machine is `skipped` with the command that gets it, and the rest are `done`; one table at the end, a non-zero
exit if anything failed. `bnexp figures` shows each run's state."""

from __future__ import annotations

import json

import pytest

from bnexp import cli, figures, results
from bnexp.figures import Claim, Figure, RunGrid

TINY_CHAIN = {"chain.width": 4, "chain.depth": 30, "chain.burn_in": 10, "chain.measure_every": 10,
              "runtime.progress": False}


def _claims_ok(frames, scale):
    df = frames["runs"]
    return [Claim.above("runs wrote rows", float(len(df)), 0, "rows")]


def _claims_bad(frames, scale):
    return [Claim.below("an impossible claim", 1.0, 0.0, "nothing")]


def _plot(frames, scale):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return fig


def _plot_raises(frames, scale):
    raise RuntimeError("the plot broke")


def _figure(fig_id, grid, plot=_plot, claims=_claims_ok):
    return Figure(fig_id, f"test figure {fig_id}", "a test figure", {"smoke": {"runs": grid}}, plot, claims)


@pytest.fixture
def test_figures(monkeypatch, tmp_path, broken_mnist):
    """Five figures, registered for the test only: done, a failing claim, a failing plot, a failing run, and
    one that needs MNIST where there is none (and no download)."""
    mnist = {"data": "mnist", "model.depth": 2, "model.width": 8, "data.batch_size": 8, "data.n_train": 8,
             "data.n_test": 8, "n_seeds": 1, "runtime.progress": False}
    figs = [
        _figure("test/ok", RunGrid("rank_width", TINY_CHAIN, {"chain.gamma": [1]})),
        _figure("test/claim", RunGrid("rank_width", TINY_CHAIN, {"chain.gamma": [1]}), claims=_claims_bad),
        _figure("test/plot", RunGrid("rank_width", TINY_CHAIN, {"chain.gamma": [1]}), plot=_plot_raises),
        _figure("test/run", RunGrid("init_depth", {**mnist, "data.root": str(broken_mnist)},
                                    {"model.depth": [2], "norm": ["bn_torch", "none"]})),
        _figure("test/data", RunGrid("init_depth", {**mnist, "model.width": 6, "data.root": str(tmp_path / "none"),
                                                    "data.download": False}, {"norm": ["none"]})),
    ]
    registry = dict(figures.REGISTRY)
    figures.all_figures()  # load the real ones first, so that the test figures come last
    monkeypatch.setattr(figures, "REGISTRY", {**figures.REGISTRY, **{f.id: f for f in figs}})
    yield [f.id for f in figs]
    figures.REGISTRY.clear()
    figures.REGISTRY.update(registry)


def test_reproduce_goes_on_past_failures_and_reports_each_figure(test_figures, outputs, capsys):
    code = cli.main(["reproduce", *test_figures, "rank/fig2", "--scale", "smoke"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1, text
    summary = {o["id"]: o for o in json.loads((outputs / "figures" / "reproduce-smoke.json").read_text())}
    assert {k: v["status"] for k, v in summary.items()} == {
        "test/ok": "done", "test/claim": "failed", "test/plot": "failed", "test/run": "failed",
        "test/data": "skipped", "rank/fig2": "done"}
    assert summary["test/claim"]["error"].startswith("claim fails: an impossible claim")
    assert summary["test/claim"]["passed"] == 0 and summary["test/claim"]["total"] == 1
    assert "the plot broke" in summary["test/plot"]["error"]
    # the failed runs are named with the error their jobs recorded; the figure after them still ran
    assert "2 run(s) not done" in summary["test/run"]["error"], summary["test/run"]
    assert "mnist" in summary["test/data"]["error"] and "bnexp data mnist" in summary["test/data"]["error"]
    assert summary["rank/fig2"]["passed"] == summary["rank/fig2"]["total"] > 0
    assert all(o["wall_s"] >= 0 for o in summary.values())
    # one table at the end: every figure with its status, claims and time; then the totals
    table = text[text.index("figure           status"):]
    for fig_id, o in summary.items():
        line = next(line for line in table.splitlines() if line.startswith(fig_id + " "))
        assert o["status"] in line
    assert "6 figure(s): 2 done, 3 failed, 1 skipped" in table
    # the failed runs' directories say why
    failed = [d for d in (outputs / "runs" / "init_depth").iterdir() if results.run_state(d) == "failed"]
    assert len(failed) == 2 and all("mnist" in results.read_status(d)["error"].lower() or
                                    "idx" in results.read_status(d)["error"].lower() for d in failed)


def test_figures_lists_the_state_of_every_run(test_figures, outputs, capsys):
    cli.main(["reproduce", "test/ok", "test/run", "--scale", "smoke"])
    capsys.readouterr()
    assert cli.main(["figures", "test/ok", "test/run", "test/data", "--scale", "smoke", "--runs"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "1 done" in next(line for line in lines if line.startswith("test/ok "))
    assert "0 done, 2 failed" in next(line for line in lines if line.startswith("test/run "))
    assert "0 done, 1 missing" in next(line for line in lines if line.startswith("test/data "))
    assert sum(line.strip().startswith("failed ") for line in lines) == 2


def test_reproduce_takes_only_launcher_settings_after_the_ids(capsys):
    assert cli.main(["reproduce", "rank/fig2", "model.depth=3", "--scale", "smoke"]) == 2
    assert "hydra.launcher.KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["reproduce", "rank/fig2", "hydra.launcher.n_jobs=2", "--scale", "smoke"]) == 2
    assert "need --launcher" in capsys.readouterr().err

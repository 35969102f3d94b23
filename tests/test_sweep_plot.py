"""``bnexp plot --exp`` and ``bnexp table`` on a real (tiny) sweep made with the CLI: the numbers against a pandas
groupby of ``bnexp.results.load`` written out here, the filters, the files written, and every error's exit code 2
with the names it must list."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest

from bnexp import cli, results

EXP = "init_depth"
SEEDS = 2
SWEEP = ["sweep", f"+exp={EXP}", "model.depth=2,4", "norm=bn_torch,none", f"n_seeds={SEEDS}", "model.width=16",
         "data.dim=16", "data.n_train=16", "data.batch_size=16", "runtime.progress=false"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The outputs root of one 2 × 2 sweep (depth × norm, two seeds), made once through the CLI."""
    root = tmp_path_factory.mktemp("sweep") / "outputs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNEXP_OUTPUTS", str(root))
        assert cli.main(SWEEP) == 0
    return root


@pytest.fixture
def swept(sweep, outputs, monkeypatch):
    monkeypatch.setenv("BNEXP_OUTPUTS", str(sweep))
    return sweep


def bnexp(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def oracle(metric, by, *, layer=None, eq=None):
    """Mean, count and per-seed values of ``metric`` per ``by`` group, straight from the loaded frame: rows of the
    metric, equality filters, the layer (``last``: each run's largest layer index, found by a loop)."""
    df = results.load(EXP)
    df = df[df["metric"] == metric]
    for column, value in (eq or {}).items():
        df = df[df[column] == value]
    if layer == "last":
        deepest = {run: df.loc[df["run"] == run, "layer"].max() for run in df["run"].unique()}
        df = df[df["layer"] == df["run"].map(deepest)]
    elif layer is not None:
        df = df[df["layer"] == layer]
    grouped = df.groupby(by)["value"]
    return grouped.mean(), grouped.count(), grouped.apply(list)


def read_table(csv_path):
    return pd.read_csv(csv_path)


def test_table_equals_a_groupby_of_the_loaded_runs(swept, tmp_path, capsys):
    path = tmp_path / "t" / "table.csv"
    code, out, _ = bnexp(capsys, "table", "--exp", EXP, "--by", "model.depth,norm", "--metric", "soft_rank",
                         "--layer", "last", "--csv", str(path))
    assert code == 0
    table = read_table(path)
    assert list(table.columns) == ["model.depth", "norm.name", "mean", "lo", "hi", "seeds"]
    mean, count, values = oracle("soft_rank", ["model.depth", "norm.name"], layer="last")
    assert len(table) == len(mean) == 4
    for row in table.itertuples(index=False):
        key = (row[0], row[1])
        assert row.mean == pytest.approx(mean[key])
        assert row.seeds == count[key] == SEEDS
        # the bootstrap CI of a mean lies between the smallest and the largest seed and brackets the mean
        assert min(values[key]) <= row.lo <= row.mean <= row.hi <= max(values[key])
    # the printed table: a header and one aligned line per group, with its mean
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model.depth", "norm.name"])
    body = lines[header + 1: header + 5]
    assert [line.split()[:2] for line in body] == [[str(d), n] for d, n in zip(table["model.depth"], table["norm.name"],
                                                                               strict=True)]
    assert [float(line.split()[2]) for line in body] == pytest.approx(table["mean"].to_numpy(), rel=1e-3)
    assert len({line.index(line.split()[2]) + len(line.split()[2]) for line in body}) == 1  # means right-aligned
    assert str(path) in out


@pytest.mark.parametrize(("args", "by", "layer", "eq"), [
    (["--at", "model.depth=4", "--layer", "1"], ["norm.name"], 1, {"model.depth": 4}),
    (["--at", "norm=none", "--layer", "0"], ["model.depth"], 0, {"norm.name": "none"}),
    (["--at", "step=0", "--at", "model.depth=2,4", "--layer", "last"], ["norm.name", "model.depth"], "last", {}),
    (["--at", "layer=last", "--at", "norm.name=bn_torch"], ["model.depth"], "last", {"norm.name": "bn_torch"}),
])
def test_table_filters(swept, capsys, tmp_path, args, by, layer, eq):
    path = tmp_path / "t.csv"
    code, _, err = bnexp(capsys, "table", "--exp", EXP, "--by", ",".join(by), "--metric", "rank_torch", *args,
                         "--csv", str(path))
    assert code == 0, err
    table = read_table(path)
    mean, count, _ = oracle("rank_torch", by, layer=layer, eq=eq)
    assert len(table) == len(mean)
    got = table.set_index(by)
    for key in mean.index:
        assert got.loc[key, "mean"] == pytest.approx(mean[key])
        assert got.loc[key, "seeds"] == count[key] == SEEDS


def test_plot_writes_png_pdf_and_the_command_that_remakes_it(swept, capsys):
    argv = ["plot", "--exp", EXP, "--x", "model.depth", "--y", "soft_rank", "--hue", "norm", "--layer", "last",
            "--logx"]
    code, out, err = bnexp(capsys, *argv)
    assert code == 0, err
    png = next(word for word in out.split() if word.endswith(".png"))
    plots = swept / "runs" / EXP / "plots"
    assert png.startswith(str(plots))
    stem = png[:-4]
    for suffix in (".png", ".pdf", ".json"):
        assert (plots / (stem.rsplit("/", 1)[1] + suffix)).stat().st_size > 0
    record = json.loads(open(stem + ".json").read())
    command = shlex.split(record["command"])
    assert command[0] == f"BNEXP_OUTPUTS={swept}" and command[1:] == ["bnexp", *argv]
    assert record["x"] == "model.depth" and record["hue"] == "norm.name" and len(record["runs"]) == 4
    # the plotted points are the groupby's means, one per (norm, depth)
    mean, count, _ = oracle("soft_rank", ["norm.name", "model.depth"], layer="last")
    points = {(p["norm.name"], p["model.depth"]): p for p in record["points"]}
    assert set(points) == set(mean.index)
    for key, p in points.items():
        assert p["mean"] == pytest.approx(mean[key]) and p["n"] == count[key] and p["lo"] <= p["mean"] <= p["hi"]
    # the recorded command remakes the same plot
    (plots / (stem.rsplit("/", 1)[1] + ".png")).unlink()
    assert cli.main(command[2:]) == 0 and (plots / (stem.rsplit("/", 1)[1] + ".png")).exists()


def test_plot_of_a_categorical_x_with_filters(swept, capsys):
    code, _, err = bnexp(capsys, "plot", "--exp", EXP, "--x", "norm", "--y", "rank_torch", "--at", "model.depth=4",
                           "--layer", "0", "--name", "by.norm", "--logy")
    assert code == 0, err
    record = json.loads((swept / "runs" / EXP / "plots" / "by_norm.json").read_text())
    mean, _, _ = oracle("rank_torch", ["norm.name"], layer=0, eq={"model.depth": 4})
    assert {p["norm.name"]: p["mean"] for p in record["points"]} == pytest.approx(mean.to_dict())


def test_figure_ids_still_go_to_the_figures(swept, capsys):
    code, _, err = bnexp(capsys, "plot", "fig3", "--scale", "smoke")
    assert code == 1 and "bnexp reproduce rank/fig3 --scale smoke" in err
    code, _, err = bnexp(capsys, "plot", "fig3", "--x", "model.depth")
    assert code == 2 and "--exp" in err
    code, _, err = bnexp(capsys, "plot", "fig3", "--exp", EXP)
    assert code == 2 and "not both" in err


PLOT = ["plot", "--exp", EXP, "--x", "model.depth", "--y", "soft_rank", "--layer", "last"]
TABLE = ["table", "--exp", EXP, "--by", "model.depth,norm", "--metric", "soft_rank", "--layer", "last"]


@pytest.mark.parametrize(("argv", "needles"), [
    (["plot", "--exp", "nope", "--x", "model.depth", "--y", "soft_rank"], ["nope", EXP, "bnexp sweep +exp=nope"]),
    (["table", "--exp", "nope", "--by", "norm", "--metric", "soft_rank"], ["nope", EXP, "bnexp sweep +exp=nope"]),
    ([*PLOT[:4], "model.dept", *PLOT[5:]], ["--x='model.dept'", "model.depth", "norm.name (norm)", "data.dim"]),
    ([*PLOT, "--hue", "normal"], ["--hue='normal'", "model.depth", "norm.name", "act.name"]),
    ([*TABLE[:4], "model.depth,nrm", *TABLE[5:]], ["--by='nrm'", "model.depth", "norm.name", "seed, step, layer"]),
    ([*TABLE, "--at", "widht=16"], ["--at='widht'", "model.width", "norm.name"]),
    ([*PLOT[:6], "soft_rnk"], ["soft_rnk", "soft_rank", "rank_torch", "rank_lower_bound", "grad_norm"]),
    ([*TABLE[:6], "rank"], ["'rank'", "soft_rank", "rank_torch", "rank_lower_bound"]),
    ([*PLOT, "--at", "model.width=128"], ["--at='model.width=128'", "leaves no rows", "model.width holds 16"]),
    ([*TABLE, "--at", "norm=bn_torch", "--at", "model.depth=8"], ["model.depth=8", "--at norm=bn_torch", "2, 4"]),
    ([*TABLE[:-1], "7"], ["--layer='7'", "leaves no rows", "0, 1, 2, 3"]),
    ([*TABLE[:-2]], ["soft_rank", "layer (0, 1, 2, 3)", "--layer"]),
    ([*TABLE[:4], "model.depth", *TABLE[5:]], ["norm.name (bn_torch, none)", "--at norm.name=", "--by"]),
    (["plot", "--exp", EXP, "--x", "norm", "--y", "loss"], ["model.depth (2, 4)", "--at model.depth="]),
    ([*PLOT[:6], "loss", "--layer", "1"], ["loss", "no layer"]),
    ([*PLOT, "--at", "model.width=wide"], ["model.width=wide", "numbers"]),
    (["plot", "--exp", EXP, "--x", "norm", "--y", "loss", "--at", "model.depth=2", "--logx"], ["--logx", "numeric"]),
])
def test_errors_exit_2_naming_the_valid_names(swept, capsys, argv, needles):
    code, out, err = bnexp(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    for needle in needles:
        assert needle in err


def test_no_runs_at_all_says_so(outputs, capsys):
    code, _, err = bnexp(capsys, *TABLE)
    assert code == 2 and "no experiment has finished runs" in err and f"bnexp sweep +exp={EXP}" in err

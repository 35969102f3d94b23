"""The results contract: run keys, run directories, appendable CSVs, skipping, and load()."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from omegaconf import OmegaConf

from bnexp import results
from bnexp.errors import CorruptRun


def _cfg(width=8, **extra):
    return OmegaConf.create({"engine": "simulate", "exp_name": "toy", "seed": 0, "n_seeds": 2,
                             "chain": {"width": width, "gamma": float("inf")},
                             "paths": {"outputs": extra.pop("outputs", "x")},
                             "runtime": {"threads": extra.pop("threads", "auto")}, **extra})


def _engine(cfg, writer):
    for seed in range(cfg.seed, cfg.seed + cfg.n_seeds):
        writer.append([(seed, step, None, "r", float(step + seed)) for step in range(3)])
    writer.append([(0, 0, 1, "grad", float("inf")), (0, 0, 2, "grad", float("nan"))])


def test_key_ignores_paths_runtime_and_hydra_but_not_the_setup():
    base = results.run_key(_cfg())
    assert results.run_key(_cfg(outputs="elsewhere", threads=1)) == base
    assert results.run_key(_cfg(hydra={"job": {"num": 3}})) == base
    assert results.run_key(_cfg(width=16)) != base
    assert len(base) == 10
    # chains draw other numbers on a GPU: a named device other than the CPU is part of a chain run's key
    on_gpu = _cfg()
    on_gpu.runtime.device = "cuda"
    assert results.run_key(on_gpu) != base
    on_gpu.runtime.device = "cpu"
    assert results.run_key(on_gpu) == base


def test_execute_writes_the_run_directory_and_skips_a_done_run(outputs):
    cfg = _cfg(outputs=str(outputs))
    directory, outcome = results.execute(cfg, _engine)
    assert outcome == "done"
    assert directory == outputs / "runs" / "toy" / results.run_key(cfg)
    info = json.loads((directory / "run.json").read_text())
    assert info["status"] == "done" and info["wall_s"] >= 0 and info["versions"]["torch"]
    assert OmegaConf.load(directory / "config.yaml").chain.width == 8
    assert results.execute(cfg, lambda c, w: pytest.fail("must not rerun"))[1] == "skipped"


def test_failed_and_dead_runs_are_rerun_and_failures_keep_the_prefix(outputs):
    cfg = _cfg(outputs=str(outputs))

    def dies(c, writer):
        writer.append([(0, 0, None, "r", 1.0)])
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        results.execute(cfg, dies)
    directory = results.run_dir(cfg)
    assert results.read_status(directory)["status"] == "failed"
    assert "boom" in results.read_status(directory)["error"]
    assert len(results.read_metrics(directory)) == 1  # the prefix survived
    # a run left "running" by a process that no longer exists is rerun from scratch
    info = results.read_status(directory)
    info.update(status="running", pid=2**22 + 12345)
    (directory / "run.json").write_text(json.dumps(info))
    assert results.execute(cfg, _engine)[1] == "done"
    assert len(results.read_metrics(directory)) == 8


def test_a_ctrl_c_leaves_the_run_interrupted_and_the_next_call_redoes_it(outputs):
    """Ctrl-C is no failure: the run stays running with ``interrupted`` noted, run_state says interrupted, and a
    later execute redoes it even while the interrupted process lives on (a notebook kernel survives Ctrl-C)."""
    cfg = _cfg(outputs=str(outputs))

    def stopped(c, writer):
        writer.append([(0, 0, None, "r", 1.0)])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        results.execute(cfg, stopped)
    directory = results.run_dir(cfg)
    info = results.read_status(directory)
    assert info["status"] == "running" and info["interrupted"] and "error" not in info
    assert results.run_state(directory) == "interrupted"
    alive = subprocess.Popen(["sleep", "30"])  # another live process of this host held the run
    try:
        (directory / "run.json").write_text(json.dumps({**info, "pid": alive.pid}))
        assert results.run_state(directory) == "interrupted"
        assert results.execute(cfg, _engine)[1] == "done"
    finally:
        alive.kill()
        alive.wait()


def test_run_json_command_is_the_one_given_else_the_command_line(outputs):
    cfg = _cfg(outputs=str(outputs))
    command = results.run_command("simulate", ["chain.width=8", "x='a b'"])
    assert command == "bnexp simulate chain.width=8 'x='\"'\"'a b'\"'\"''"
    directory, _ = results.execute(cfg, _engine, command=command)
    assert results.read_status(directory)["command"] == command
    directory, _ = results.execute(_cfg(width=16, outputs=str(outputs)), _engine)
    assert results.read_status(directory)["command"].startswith("bnexp")


def test_load_joins_flattened_config_and_filters(outputs):
    for width in (8, 16):
        results.execute(_cfg(width=width, outputs=str(outputs)), _engine)
    df = results.load("toy")
    assert set(df["chain.width"]) == {8, 16}
    assert list(df.columns[:5]) == list(results.COLUMNS)
    assert sorted(df.seed.unique()) == [0, 1] and (df.base_seed == 0).all()  # replicate seeds survive the join
    only = results.load("toy", chain__width=16)
    assert set(only["chain.width"]) == {16} and len(only) == 8
    assert len(results.load("toy", {"chain.width": [8, 16]})) == 16
    grad = only[only.metric == "grad"].sort_values("layer")
    assert math.isinf(grad.value.iloc[0]) and math.isnan(grad.value.iloc[1])  # inf/nan survive the CSV
    assert grad.layer.tolist() == [1, 2] and only[only.metric == "r"].layer.isna().all()
    assert results.load("nothing").empty


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda text: text[:-7], "ends in the middle of a row"),  # cut inside the last row
    (lambda text: text.replace("\r\n1,1,,r,", "\r\n1,1,,", 1), "has 4 fields, expected 5"),
    (lambda text: text + "0,9,,r,1.0,7\r\n", "has 6 fields"),
    (lambda text: text + "0,9,,r,0.5x\r\n", "not a number"),
    (lambda text: text + "0,9,,,0.5\r\n", "has no metric name"),
    (lambda text: "seed,step,metric\r\n", "has the header"),
])
def test_a_damaged_metrics_csv_is_an_error_naming_the_file(outputs, damage, needle):
    directory, _ = results.execute(_cfg(outputs=str(outputs)), _engine)
    path = directory / "metrics.csv"
    path.write_bytes(damage(path.read_bytes().decode()).encode())
    with pytest.raises(CorruptRun) as err:
        results.load("toy")
    text = str(err.value)
    assert str(path) in text and needle in text and f"rm -r {directory}" in text


def test_an_unfinished_run_reads_up_to_its_last_whole_row(outputs):
    directory, _ = results.execute(_cfg(outputs=str(outputs)), _engine)
    path = directory / "metrics.csv"
    path.write_bytes(path.read_bytes()[:-7])  # a run being written stops mid-row
    info = results.read_status(directory)
    info["status"] = "running"
    (directory / "run.json").write_text(json.dumps(info))
    assert results.load("toy").empty  # unfinished runs are not results
    assert len(results.load("toy", include_unfinished=True)) == 7  # the whole rows of one that is


def test_plot_and_report_name_the_damaged_run_and_how_to_redo_it(outputs, capsys):
    from bnexp import cli, figures

    assert cli.main(["reproduce", "rank/fig9", "--scale", "smoke"]) == 0
    directory = next((outputs / "runs" / "rank_regularity").iterdir())
    path = directory / "metrics.csv"
    path.write_bytes(path.read_bytes()[:-3])
    capsys.readouterr()
    assert cli.main(["plot", "rank/fig9", "--scale", "smoke"]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and f"rm -r {directory}" in err and "truncated" in err
    claims = figures.get("rank/fig9").output_stem().with_suffix(".claims.json")
    claims.write_text(claims.read_text()[:40])
    assert cli.main(["report"]) == 1
    err = capsys.readouterr().err
    assert str(claims) in err and "bnexp plot rank/fig9" in err

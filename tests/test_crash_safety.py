"""Crash safety with real processes: a sweep killed with SIGKILL (or stopped by Ctrl-C) part-way and run again
recomputes no finished run, counts no half-written run as done, leaves no torn row, and ends with the figure of an
uninterrupted sweep; two sweeps into one outputs directory at once compute every run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnexp import figures, results

FIGURE = "rank/fig8"  # quick scale: 5 chain runs of 0.5-7 s each, enough to be killed in the middle of one


def _bnexp(outputs: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "BNEXP_OUTPUTS": str(outputs), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bnexp", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _runs(outputs: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted((outputs / "runs").glob("*/*")) if d.is_dir()}


def _claims(outputs: Path) -> list[dict]:
    stem = figures.get(FIGURE).output_stem(outputs)
    return json.loads(stem.with_suffix(".claims.json").read_text())["claims"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The figure reproduced without interruption."""
    outputs = tmp_path_factory.mktemp("reference")
    _finish(_bnexp(outputs, "reproduce", FIGURE, "--scale", "quick"))
    return outputs


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_sweep_killed_part_way_resumes_without_redoing_or_trusting_half_done_runs(reference, tmp_path, sig):
    """SIGKILL: the run being computed stays ``running`` with a dead process. Ctrl-C (SIGINT): the same, said in
    one line (no traceback, exit status 130) and noted in run.json as ``interrupted``, not ``failed``."""
    outputs = tmp_path / "outputs"
    proc = _bnexp(outputs, "reproduce", FIGURE, "--scale", "quick")
    deadline = time.time() + 240
    while time.time() < deadline:  # kill -9 once two runs are done and a third is being computed
        states = [results.run_state(d) for d in _runs(outputs).values()]
        if states.count("done") >= 2 and "running" in states:
            break
        assert proc.poll() is None, "the sweep finished before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "bnexp: interrupted." in out and "Traceback" not in out, out
    before = {key: results.read_status(d) for key, d in _runs(outputs).items()}
    states = {key: results.run_state(d) for key, d in _runs(outputs).items()}
    assert list(states.values()).count("interrupted") == 1, states
    killed = next(key for key, s in states.items() if s == "interrupted")
    assert before[killed]["status"] == "running" and ("interrupted" in before[killed]) == (sig == signal.SIGINT)
    done = [key for key, s in states.items() if s == "done"]
    assert len(done) >= 2
    # a half-written run is never read as a result, and figures say it is missing, not done
    assert killed not in set(results.load("rank_regularity")["run"])
    _, missing = figures.get(FIGURE).status("quick")
    assert len(missing) == 5 - len(done)

    _finish(_bnexp(outputs, "reproduce", FIGURE, "--scale", "quick"))
    after = {key: results.read_status(d) for key, d in _runs(outputs).items()}
    assert set(after) == set(_runs(reference))
    for key in done:  # not recomputed: the same run.json, start time and all
        assert after[key] == before[key]
    assert after[killed]["status"] == "done" and after[killed]["start"] != before[killed]["start"]
    for key, directory in _runs(outputs).items():  # every row whole, every value the reference's
        ours, theirs = results.read_metrics(directory), results.read_metrics(_runs(reference)[key])
        assert ours.equals(theirs), key
    assert _claims(outputs) == _claims(reference)


def test_two_sweeps_into_one_outputs_directory_compute_each_run_once(reference, tmp_path):
    outputs = tmp_path / "outputs"
    args = ("reproduce", FIGURE, "--scale", "quick")
    first, second = _bnexp(outputs, *args), _bnexp(outputs, *args)
    texts = [_finish(first), _finish(second)]
    computed = [line for text in texts for line in text.splitlines()
                if line.startswith("[bnexp] rank_regularity/") and ": done in " in line]
    keys = [line.split("/")[1].split(":")[0] for line in computed]
    assert sorted(keys) == sorted(_runs(reference)), computed  # each of the 5 runs computed by one process
    for key, directory in _runs(outputs).items():
        assert results.run_state(directory) == "done"
        assert results.read_metrics(directory).equals(results.read_metrics(_runs(reference)[key]))
    assert _claims(outputs) == _claims(reference)

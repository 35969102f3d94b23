"""Sweeps on Hydra's launchers end to end: the same sweep gives the same CSVs on basic, submitit_local and a real
one-node SLURM cluster (`hydra/launcher=slurm`); a failing job is reported with its error at the end while the
others finish; launching a finished sweep again does no work; the cluster's logs land where the config group
says. The SLURM tests start slurmctld/slurmd/munged themselves when running as root with Debian's packages
installed (`.ci/run` installs them), and stop what they started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnexp import cli, results

GRID = ["+exp=rank_width", "chain.width=4,8", "chain.gamma=1,inf", "chain.depth=60", "chain.burn_in=10",
        "chain.measure_every=10", "runtime.progress=false"]


def _failing_grid(root: Path) -> list[str]:
    """Two runs: one on a Gaussian batch (fine), one on the broken MNIST under ``root`` (fails when it reads the
    files)."""
    return ["+exp=init_depth", "model.depth=2", "model.width=8", "data.batch_size=8", "data.n_train=8",
            "data.n_test=8", "n_seeds=1", "norm=none", "data=gaussian,mnist", f"++data.root={root}",
            "runtime.progress=false"]


def _csvs(root: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((root / "runs").glob("*/*/metrics.csv"))}


def _sweep(capsys, monkeypatch, outputs: Path, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("BNEXP_OUTPUTS", str(outputs))
    code = cli.main(["sweep", *args])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def basic_csvs(tmp_path_factory) -> dict[str, bytes]:
    outputs = tmp_path_factory.mktemp("basic")
    env = {**os.environ, "BNEXP_OUTPUTS": str(outputs)}
    subprocess.run([sys.executable, "-m", "bnexp", "sweep", *GRID], env=env, check=True, capture_output=True)
    return _csvs(outputs)


def test_submitit_local_gives_the_basic_launchers_csvs(basic_csvs, tmp_path, capsys, monkeypatch):
    code, text = _sweep(capsys, monkeypatch, tmp_path, *GRID, "hydra/launcher=submitit_local")
    assert code == 0, text
    assert _csvs(tmp_path) == basic_csvs and len(basic_csvs) == 4


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_failing_job_is_reported_and_the_others_finish(launcher, tmp_path, capsys, monkeypatch, broken_mnist):
    grid = _failing_grid(broken_mnist)
    code, text = _sweep(capsys, monkeypatch, tmp_path / "out", *grid, f"hydra/launcher={launcher}")
    assert code == 1, text
    states = sorted(results.run_state(d) for d in (tmp_path / "out" / "runs" / "init_depth").iterdir())
    assert states == ["done", "failed"]
    assert "sweep finished with 1 done, 1 failed" in text and "not a readable IDX file" in text
    assert "data=mnist" in text.split("sweep finished with")[1]


# ------------------------------------------------------------------------------------------- a real cluster

SLURM_CONF = """# written by bnexp's tests: a one-node cluster on this machine
ClusterName=bnexp-test
SlurmctldHost={host}
ProctrackType=proctrack/linuxproc
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/bnexp-test-slurm/slurmd
StateSaveLocation=/var/spool/bnexp-test-slurm/slurmctld
SlurmUser=root
SwitchType=switch/none
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch")


def _node_idle() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "idle" in out.stdout


def _pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _skip(why: str) -> None:
    """Skip, or fail where the tools are required (BNEXP_REQUIRE_TOOLS, set by .ci/run after installing them)."""
    if os.environ.get("BNEXP_REQUIRE_TOOLS"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster on this machine: an already running one, or one started here (root only)."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        _skip(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurmctld slurmd "
                    "slurm-client munge (.ci/run does)")
    if _node_idle():
        yield "debug"
        return
    if os.geteuid() != 0:
        _skip("starting a test SLURM cluster needs root (slurmctld, slurmd and munged run as root here)")
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "bnexp's tests" not in conf.read_text():
        _skip(f"{conf} belongs to another cluster, which is not running; not touching it")
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(SLURM_CONF.format(host=socket.gethostname(), cpus=os.cpu_count()))
    shutil.rmtree("/var/spool/bnexp-test-slurm", ignore_errors=True)  # our own state: no jobs of an earlier run
    for d in ("/var/spool/bnexp-test-slurm/slurmctld", "/var/spool/bnexp-test-slurm/slurmd", "/var/log/slurm",
              "/run/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        subprocess.run(["mungekey", "-c"], check=True)
    started: list[str] = []
    try:
        if _pid("/run/munge/munged.pid") is None:
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
            started.append("/run/munge/munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([shutil.which(daemon) or f"/usr/sbin/{daemon}"], check=True)
            started.append(f"/run/{daemon}.pid")
        deadline = time.time() + 60
        while not _node_idle():
            if time.time() > deadline:
                raise RuntimeError("the node never became idle")
            time.sleep(0.5)
    except (subprocess.CalledProcessError, RuntimeError) as err:
        _stop(started)
        log = Path("/var/log/slurm/slurmctld.log")
        pytest.fail(f"the test SLURM cluster did not start ({err}): {log.read_text()[-1500:] if log.exists() else ''}")
    yield "debug"
    _stop(started)


def _stop(pid_files: list[str]) -> None:
    """Let the last job steps end (a step whose controller is gone hangs), then stop the daemons we started,
    by their process ids."""
    deadline = time.time() + 30
    while pid_files and time.time() < deadline:
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=False)
        if queue.returncode != 0 or not queue.stdout.strip():
            break
        time.sleep(0.5)
    else:
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, check=False)
    for pid_file in reversed(pid_files):
        pid = _pid(pid_file)
        if pid is not None:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


def _slurm(partition: str, logs: Path) -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition}", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=10", f"hydra.launcher.submitit_folder={logs}/%j"]


def test_slurm_sweep_gives_the_basic_csvs_logs_where_asked_and_runs_once(slurm, basic_csvs, tmp_path, capsys,
                                                                           monkeypatch):
    logs = tmp_path / "slurm-logs"
    code, text = _sweep(capsys, monkeypatch, tmp_path / "out", *GRID, *_slurm(slurm, logs))
    assert code == 0, text
    assert _csvs(tmp_path / "out") == basic_csvs
    assert "Bypassing sacct error" not in text
    tasks = sorted(p for p in logs.glob("*_*") if p.is_dir())  # <array job id>_<task>: one per run
    assert len(tasks) == 4 and all(list(t.glob("*_log.out")) and list(t.glob("*_log.err")) for t in tasks)
    infos = {p.parent.name: p.read_text() for p in (tmp_path / "out" / "runs").glob("*/*/run.json")}
    # the same sweep again: nothing left to do, so nothing is submitted and nothing recomputed
    code, text = _sweep(capsys, monkeypatch, tmp_path / "out", *GRID, *_slurm(slurm, logs))
    assert code == 0 and "4 run(s), 4 already done" in text and "Submitit" not in text
    assert {p.parent.name: p.read_text() for p in (tmp_path / "out" / "runs").glob("*/*/run.json")} == infos
    assert len([p for p in logs.glob("*_*") if p.is_dir()]) == 4


def test_slurm_reports_a_failing_job_and_finishes_the_others(slurm, tmp_path, capsys, monkeypatch, broken_mnist):
    code, text = _sweep(capsys, monkeypatch, tmp_path / "out", *_failing_grid(broken_mnist),
                        *_slurm(slurm, tmp_path / "logs"))
    assert code == 1, text
    states = sorted(results.run_state(d) for d in (tmp_path / "out" / "runs" / "init_depth").iterdir())
    assert states == ["done", "failed"]
    assert "sweep finished with 1 done, 1 failed" in text and "not a readable IDX file" in text

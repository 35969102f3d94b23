"""Running configs through Hydra: one run in its run directory, or a sweep on any Hydra launcher.

Every run of a sweep is composed and validated before any work starts (:func:`launch`); then Hydra runs the
jobs on the chosen launcher (``basic``, ``joblib``, ``submitit_local``, ``submitit_slurm``/``slurm``), each job
calling :func:`run_one`, which computes the run unless it is done (``results.execute``: skipped when done,
waited for when another process holds it). A job that fails records its error in ``run.json`` and the others
go on; :func:`launch` reads back every run's state from its directory, so the outcome is the same whichever
launcher ran the jobs, and :func:`report_sweep` names each failure with its error.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bnexp import config, engines, results, runtime
from bnexp.errors import ConfigError


def run_one(cfg: DictConfig, *, force: bool = False, command: str | None = None) -> str:
    """Validate and execute one composed config in its run directory (its engine: ``cfg.engine``); returns the
    directory. ``command``: the one that makes this run again, for its run.json."""
    engine = engines.validate(cfg)
    device = str(runtime.resolve_device(cfg.get("runtime", {}).get("device", "auto"), engine.prefers_cuda))

    def waiting(directory, info) -> None:
        who = f"pid {info.get('pid')} on {info.get('host')}" if info else "another process"
        print(f"[bnexp] {cfg.exp_name}/{directory.name}: being computed by {who}; waiting for it", flush=True)

    start = time.time()
    directory, outcome = results.execute(cfg, engine.run, device=device, force=force, on_wait=waiting,
                                         command=command)
    took = f" in {time.time() - start:.1f}s" if outcome == "done" else " (already done)"
    print(f"[bnexp] {cfg.exp_name}/{directory.name}: {outcome}{took} → {directory}", flush=True)
    return str(directory)


def hydra_main(config_name: str, args: Sequence[str], multirun: bool) -> None:
    """Run the Hydra app on ``config_name`` with ``args`` (exactly as if typed after the command).

    In a multirun a job that fails records its error in its ``run.json`` and prints one line; the other jobs
    go on (the caller reports every failure at the end). A single run's error propagates.
    """
    import hydra

    @hydra.main(config_path=str(config.config_dir()), config_name=config_name, version_base="1.3")
    def task(cfg: DictConfig) -> str | None:
        from hydra.core.hydra_config import HydraConfig

        try:  # the job's own overrides (a sweep's point of the grid), not the whole sweep's
            return run_one(cfg, command=results.run_command(config_name, HydraConfig.get().overrides.task))
        except ConfigError as err:  # a user error found inside a run (e.g. dataset files missing): no traceback
            if multirun:
                print(f"[bnexp] {cfg.exp_name}: failed: {err}", file=sys.stderr, flush=True)
                return None
            raise _UserError(err) from None
        except Exception as err:
            if not multirun:
                raise
            traceback.print_exc()  # the whole story goes to the job's log; run.json keeps the last line
            print(f"[bnexp] {cfg.exp_name}: failed: {_first_line(err)}", file=sys.stderr, flush=True)
            return None

    argv = sys.argv
    sys.argv = ["bnexp", *(["--multirun"] if multirun else []), *args]
    try:
        with _quiet_submitit():
            task()
    except _UserError as wrapped:
        raise wrapped.error from None
    finally:
        sys.argv = argv


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


class _NoSacctNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


@contextmanager
def _quiet_submitit():
    """Hide submitit's "Bypassing sacct error ... status may be inaccurate" warnings while a sweep waits on
    Slurm: a cluster without an accounting database (a one-node test cluster) makes every poll print one, and
    submitit then reads each job's state from squeue and its result file, which is all a sweep needs."""
    logger, noise = logging.getLogger("submitit"), _NoSacctNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


class _UserError(BaseException):
    """Carries a ConfigError out of a Hydra job: Hydra prints a traceback for any Exception it sees, and a
    missing dataset or an impossible value deserves one clear line (``main`` prints it)."""

    def __init__(self, error: ConfigError):
        super().__init__(str(error))
        self.error = error


def _is_hydra_flag(arg: str) -> bool:
    return arg.startswith("-")


def _sweep_overrides(args: Sequence[str]) -> list[list[str]]:
    """Expand a sweep (experiment grid merged with command-line sweeps) into one override list per run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if not _is_hydra_flag(a)]
    parsed = OverridesParser.create().parse_overrides(overrides)
    exp = config.exp_from_overrides(overrides)
    grid = config.experiment_grid(exp) if exp else {}
    fixed = []
    for item, ov in zip(overrides, parsed):
        key = ov.get_key_element()
        if ov.is_sweep_override():
            grid[key] = list(ov.sweep_string_iterator())
        elif not key.startswith("hydra"):
            grid.pop(key, None)
            fixed.append(item)
    return [fixed + combo for combo in config.expand_grid(grid)]


@dataclass
class RunOutcome:
    """What became of one run of a sweep, read back from its run directory (so it works for any launcher)."""

    overrides: list[str]
    directory: Path
    state: str  # results.run_state: done, failed, running, interrupted, missing
    error: str | None = None


def launch(command: str, args: list[str]) -> list[RunOutcome]:
    """``bnexp train|simulate|inputs|sweep ARGS``: compose and validate every run first, hand them to Hydra
    (any launcher), then read back what became of each run."""
    engine = engines.for_args(args, command if command in engines.ENGINES else "train")
    if command in engines.ENGINES and engine.name != command:
        exp = config.exp_from_overrides(args)
        raise ConfigError("+exp", exp, f"it is written for the {engine.name} engine; run it with "
                          f"`bnexp {engine.name}`")
    runs = _sweep_overrides(args) if command == "sweep" else [[a for a in args if not _is_hydra_flag(a)]]
    cfgs, directories = [], []
    for overrides in runs:  # compose and validate every run before any work starts
        cfg = config.compose(engine.config_name, overrides)
        engines.validate(cfg)
        if engine.name == "train":
            from bnexp.engines.train_group import check_stack

            check_stack(cfg)
        cfgs.append(cfg)
        directories.append(results.run_dir(cfg))
    done = sum(results.is_done(d) for d in directories)
    if command == "sweep":
        print(f"[bnexp] sweep: {len(runs)} run(s), {done} already done", flush=True)
    if command != "sweep" or done < len(runs):  # a finished sweep submits no job at all
        if directories and not any(a.startswith("paths.outputs=") for a in args):
            # resolved here, not in the job: a reused worker process (joblib's) may carry another environment
            outputs = str(directories[0].parents[2].resolve())
            for cfg in cfgs:
                cfg.paths.outputs = outputs
            if not re.fullmatch(r"[\w/.+-]+", outputs):  # quoted for Hydra's override grammar
                outputs = "'" + outputs.replace("\\", "\\\\").replace("'", "\\'") + "'"
            args = [*args, f"paths.outputs={outputs}"]
        if command == "sweep" and engine.name == "train" and _basic_launcher(args):
            outputs_arg = [a for a in args if a.startswith("paths.outputs=")][-1:]
            commands = [results.run_command(engine.name, [*o, *outputs_arg]) for o in runs]
            _train_groups(cfgs, directories, commands)
        hydra_main(engine.config_name, args, multirun=command == "sweep")
    outcomes = []
    for overrides, directory in zip(runs, directories):
        state = results.run_state(directory)
        error = (results.read_status(directory) or {}).get("error") if state == "failed" else None
        outcomes.append(RunOutcome(overrides, directory, state, error))
    return outcomes


def _basic_launcher(args: Sequence[str]) -> bool:
    """Whether the sweep runs its jobs in this process (Hydra's basic launcher): only then are groups stacked."""
    chosen = [a.split("=", 1)[1] for a in args if a.lstrip("+").startswith("hydra/launcher=")]
    return not chosen or chosen[-1] == "basic"


def _train_groups(cfgs: Sequence[DictConfig], directories: Sequence[Path], commands: Sequence[str]) -> None:
    """Train the sweep's stackable runs group by group as one model each (:mod:`bnexp.engines.train_group`). A
    group that fails is reported and its runs are left to the per-run jobs that follow, which redo them.
    ``commands[i]`` makes run i again (its run.json)."""
    from bnexp.engines import train_group

    command_of = dict(zip(directories, commands))
    for members in train_group.plan(list(zip(cfgs, directories))):
        differ = ", ".join(f"lr={m.optim.lr:g} wd={m.optim.weight_decay:g}" for m, _ in members)
        print(f"[bnexp] {members[0][0].exp_name}: {len(members)} runs as one stacked model ({differ})", flush=True)
        start = time.time()
        try:
            computed = train_group.run_group(members, command_of)
        except Exception as err:  # the group's runs are marked failed; their own jobs come next and redo them
            traceback.print_exc()
            print(f"[bnexp] stacked group failed ({_first_line(err)}); its runs go one at a time", file=sys.stderr,
                  flush=True)
            continue
        for directory in computed:
            print(f"[bnexp] {members[0][0].exp_name}/{directory.name}: done (stacked) → {directory}", flush=True)
        if computed:
            print(f"[bnexp] stacked group of {len(computed)} done in {time.time() - start:.1f}s", flush=True)


def report_sweep(outcomes: Sequence[RunOutcome]) -> int:
    """Print a sweep's failed or unfinished runs with their errors; 1 if there is any, else 0."""
    bad = [o for o in outcomes if o.state != "done"]
    if not bad:
        return 0
    counts = ", ".join(f"{n} {state}" for state, n in Counter(o.state for o in outcomes).items())
    print(f"[bnexp] sweep finished with {counts}:", file=sys.stderr)
    for o in bad:
        why = (o.error or "").strip().splitlines()
        reason = why[-1] if why else {"missing": "the job ended before the run started (see the launcher's log)",
                                      "interrupted": "its process died or was stopped part-way (rerun the sweep to "
                                                     "redo it)",
                                      "running": "still being computed by another process"}.get(o.state, "")
        print(f"  {o.state:11s} {o.directory}  {' '.join(o.overrides)}\n              {reason}", file=sys.stderr)
    return 1



"""The ``bnexp`` command (usage below; ``bnexp --help`` prints it).

::

    bnexp train [+exp=NAME] [key=value ...]        one network run (optim.epochs=0: measure at init)
    bnexp simulate [+exp=NAME] [key=value ...]     one random-matrix chain run
    bnexp inputs [+exp=NAME] [key=value ...]       statistics of input batches (no network)
    bnexp sweep +exp=NAME [key=v1,v2 ...]          the experiment's grid (Hydra multirun), or an ad-hoc one
    bnexp reproduce FIG... [--scale quick]         run whatever FIG still lacks, then plot it
    bnexp plot FIG... [--scale quick]              regenerate FIG from saved CSVs only
    bnexp figures [--scale quick]                  every figure: id, title, runs present, claims passing
    bnexp report                                   one page with every figure, its claims and commands

``train``, ``simulate``, ``inputs`` and ``sweep`` take Hydra overrides (and Hydra flags such as ``--cfg job``); a
launcher is chosen the Hydra way, e.g. ``hydra/launcher=joblib`` or ``hydra/launcher=submitit_slurm``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from omegaconf import DictConfig

from bnexp import config, results, runtime
from bnexp.errors import ConfigError

HYDRA_COMMANDS = ("train", "simulate", "inputs", "sweep")


# --------------------------------------------------------------------------------------- running one config

def run_one(cfg: DictConfig, *, force: bool = False) -> str:
    """Validate and execute one composed config in its run directory; returns the directory."""
    config.validate(cfg)
    if cfg.engine == "simulate":
        from bnexp.chains import run as engine
    elif cfg.engine == "inputs":
        from bnexp.inputs import run as engine
    else:
        from bnexp.train import run as engine
    device = str(runtime.resolve_device(cfg.get("runtime", {}).get("device", "auto"), cfg.engine))
    start = time.time()
    directory, outcome = results.execute(cfg, engine, device=device, force=force)
    took = f" in {time.time() - start:.1f}s" if outcome == "done" else " (already done)"
    print(f"[bnexp] {cfg.exp_name}/{directory.name}: {outcome}{took} → {directory}", flush=True)
    return str(directory)


def _hydra_main(config_name: str, args: Sequence[str], multirun: bool) -> None:
    """Run the Hydra app on ``config_name`` with ``args`` (exactly as if typed after the command)."""
    import hydra

    @hydra.main(config_path=str(config.config_dir()), config_name=config_name, version_base="1.3")
    def task(cfg: DictConfig) -> str:
        try:
            return run_one(cfg)
        except ConfigError as err:  # a user error found inside a run (e.g. dataset files missing): no traceback
            raise _UserError(err) from None

    argv = sys.argv
    sys.argv = ["bnexp", *(["--multirun"] if multirun else []), *args]
    try:
        task()
    except _UserError as wrapped:
        raise wrapped.error from None
    finally:
        sys.argv = argv


class _UserError(BaseException):
    """Carries a ConfigError out of a Hydra job: Hydra prints a traceback for any Exception it sees, and a
    missing dataset or an impossible value deserves one clear line (``main`` prints it)."""

    def __init__(self, error: ConfigError):
        super().__init__(str(error))
        self.error = error


def _engine_for(args: Sequence[str], default: str) -> str:
    exp = config.exp_from_overrides(args)
    if exp is not None:
        return config.experiment_engine(exp)
    for item in args:
        if item.startswith("engine="):
            return config.choose_engine(item.partition("=")[2])
    return default


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


def cmd_hydra(command: str, args: list[str]) -> int:
    """``bnexp train|simulate|inputs|sweep``: validate every run first, then hand over to Hydra."""
    default = command if command in config.ENGINES else "train"
    if any(a in ("--help", "-h", "--hydra-help", "--info") or a.startswith("--cfg") for a in args):
        _hydra_main(_engine_for(args, default), args, multirun=command == "sweep")
        return 0
    engine = _engine_for(args, default)
    if command in config.ENGINES and engine != command:
        exp = config.exp_from_overrides(args)
        raise ConfigError("+exp", exp, f"it is written for the {engine} engine; run it with `bnexp {engine}`")
    runs = _sweep_overrides(args) if command == "sweep" else [[a for a in args if not _is_hydra_flag(a)]]
    todo = 0
    for overrides in runs:  # compose and validate every run before any work starts
        cfg = config.compose(engine, overrides)
        config.validate(cfg)
        todo += not results.is_done(results.run_dir(cfg))
    if command == "sweep":
        print(f"[bnexp] sweep: {len(runs)} run(s), {len(runs) - todo} already done", flush=True)
    _hydra_main(engine, args, multirun=command == "sweep")
    return 0


# --------------------------------------------------------------------------------------- figures

def _figures(ids: Sequence[str]):
    from bnexp import figures

    return figures.select(ids)


def plot_figure(fig, scale: str) -> dict:
    """Plot ``fig`` from saved runs and check its claims; writes png, pdf and claims.json."""
    from bnexp import figures, plotting
    from bnexp.report import markdown_table

    frames = figures.frames_for(fig, scale)
    figure = fig.plot(frames, scale)
    stem = fig.output_stem()
    paths = plotting.save(figure, stem)
    claims = fig.claims(frames, scale)
    record = {"id": fig.id, "title": fig.title, "scale": scale, "caption": fig.caption,
              "alias_of": fig.alias_of, "commands": fig.commands(scale),
              "claims": [c.to_dict() for c in claims],
              "runs": {name: sorted(df["run"].unique().tolist()) for name, df in frames.items()}}
    stem.with_suffix(".claims.json").write_text(json.dumps(record, indent=2, default=str))
    if fig.table is not None:
        table = fig.table(frames, scale)
        table.to_csv(stem.with_suffix(".csv"), index=False)
        stem.with_suffix(".md").write_text(markdown_table(table))
    print(f"[bnexp] {fig.id} ({scale}) → {paths[0]}")
    for c in claims:
        mark = "PASS" if c.passed else "FAIL"
        print(f"  {mark}  {c.statement}: measured {c.measured:.4g} {c.expected}  (paper: {c.paper})")
    return record


def cmd_plot(ns: argparse.Namespace) -> int:
    from bnexp.figures import MissingRuns

    failed = 0
    for fig in _figures(ns.figures):
        try:
            plot_figure(fig, ns.scale)
        except MissingRuns as err:
            print(f"bnexp: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_reproduce(ns: argparse.Namespace) -> int:
    launcher = [f"hydra/launcher={ns.launcher}"] if ns.launcher else []
    if ns.launcher == "joblib" and ns.jobs:
        launcher.append(f"hydra.launcher.n_jobs={ns.jobs}")
    figs = _figures(ns.figures)
    done_grids: set[str] = set()
    for fig in figs:
        for grid in fig.grids(ns.scale).values():
            command = grid.command()
            if command in done_grids:  # aliases share runs
                continue
            done_grids.add(command)
            print(f"[bnexp] {fig.id}: {command}", flush=True)
            if not ns.dry_run:
                cmd_hydra("sweep", grid.sweep_args() + launcher)
    if ns.dry_run:
        return 0
    failed = sum(not all(c["passed"] for c in plot_figure(fig, ns.scale)["claims"]) for fig in figs)
    if failed:
        print(f"[bnexp] {failed} figure(s) with failing claims", file=sys.stderr)
    return 1 if failed else 0


def cmd_figures(ns: argparse.Namespace) -> int:
    from bnexp import figures

    for fig in figures.all_figures():
        present, missing = fig.status(ns.scale) if ns.scale in fig.runs else ({}, [])
        have = sum(len(v) for v in present.values())
        stem = fig.output_stem()
        claims = "-"
        claims_file = stem.with_suffix(".claims.json")
        if claims_file.exists():
            rec = json.loads(claims_file.read_text())
            ok = sum(c["passed"] for c in rec["claims"])
            claims = f"{ok}/{len(rec['claims'])} pass ({rec['scale']})"
        alias = f" (= {fig.alias_of})" if fig.alias_of else ""
        runs = f"{have}/{have + len(missing)}"
        print(f"{fig.id:15s} {fig.kind:6s} runs {runs:>7s} ({ns.scale})  claims {claims:18s} "
              f"{fig.title}{alias}")
    return 0


def cmd_report(ns: argparse.Namespace) -> int:
    from bnexp.report import write_report

    path = write_report()
    print(f"[bnexp] report → {path}")
    return 0


# --------------------------------------------------------------------------------------- entry point

def _parser() -> argparse.ArgumentParser:
    from bnexp.figures import SCALES

    usage = __doc__.split("::")[1].rstrip()
    p = argparse.ArgumentParser(prog="bnexp", description="Reproduce the figures of the batch-normalization papers.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog="commands:" + usage)
    sub = p.add_subparsers(dest="command", required=True)
    for name in HYDRA_COMMANDS:
        sub.add_parser(name, help=f"{name} (Hydra overrides follow)", add_help=False)
    scale = {"choices": SCALES, "default": "quick", "help": "smoke (tests), quick (CPU minutes), paper"}
    plot = sub.add_parser("plot", help="regenerate figures from saved runs (no training)")
    plot.add_argument("figures", nargs="+", help="ids like fig3, rank/fig3, markov/table1, rank, all")
    plot.add_argument("--scale", **scale)
    rep = sub.add_parser("reproduce", help="run the runs figures still lack, then plot them")
    rep.add_argument("figures", nargs="+")
    rep.add_argument("--scale", **scale)
    rep.add_argument("--launcher", default=None, help="Hydra launcher: basic, joblib, submitit_local, ...")
    rep.add_argument("--jobs", type=int, default=None, help="parallel jobs for the joblib launcher")
    rep.add_argument("--dry-run", action="store_true", help="print the sweeps without running them")
    figs = sub.add_parser("figures", help="list every figure with its runs and claims")
    figs.add_argument("--scale", **scale)
    sub.add_parser("report", help="one page with every plotted figure and its claims")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HYDRA_COMMANDS:
            return cmd_hydra(argv[0], argv[1:])
        ns = _parser().parse_args(argv)
        return {"plot": cmd_plot, "reproduce": cmd_reproduce, "figures": cmd_figures,
                "report": cmd_report}[ns.command](ns)
    except ConfigError as err:
        print(f"bnexp: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # Hydra's own config errors: unknown group option, unknown key
        if type(err).__module__.startswith(("hydra", "omegaconf")):
            print(f"bnexp: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

"""The ``bnexp`` command (usage below; ``bnexp --help`` prints it).

::

    bnexp train [+exp=NAME] [key=value ...]        one network run (optim.epochs=0: measure at init)
    bnexp simulate [+exp=NAME] [key=value ...]     one random-matrix chain run
    bnexp inputs [+exp=NAME] [key=value ...]       statistics of input batches (no network)
    bnexp sweep +exp=NAME [key=v1,v2 ...]          the experiment's grid (Hydra multirun), or an ad-hoc one
    bnexp reproduce FIG... [--scale quick]         run whatever FIG still lacks, plot it, check its claims;
                                                   every figure is tried, then one summary table
    bnexp plot FIG... [--scale quick]              regenerate FIG from saved CSVs only
    bnexp plot --exp NAME --x COL --y METRIC [--hue COL] [--layer N|last] [--at COL=V ...] [--logx] [--logy]
                                                   a sweep's own plot: mean ± 95% CI over seeds, written to
                                                   outputs/runs/NAME/plots/ with the command that made it
    bnexp table --exp NAME --by COL,... --metric METRIC [--layer N|last] [--at COL=V ...] [--csv PATH]
                                                   mean, 95% CI and seed count per group of a sweep
    bnexp figures [FIG...] [--scale quick] [--runs]  every figure: its runs done/running/failed/missing, claims
    bnexp figures --targets                        the make targets of the papers and figures, with their costs
    bnexp data [NAME...] [--scale quick]           get the real datasets the figures need (apt, download)
    bnexp report                                   outputs/report/index.html: every figure, claims, commands

Columns (COL) are those of ``bnexp.results.load(NAME)``: ``seed``, ``step``, ``layer`` and the flattened config
(``model.depth``, ``norm.name``, ...); a bare config group means its name (``norm`` is ``norm.name``).

``train``, ``simulate``, ``inputs`` and ``sweep`` take Hydra overrides (and Hydra flags such as ``--cfg job``); a
launcher is chosen the Hydra way, e.g. ``hydra/launcher=joblib`` or ``hydra/launcher=slurm`` (configs/hydra/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bnexp import engines, launch
from bnexp.errors import ConfigError, CorruptRun, check_int

HYDRA_COMMANDS = (*engines.ENGINES, "sweep")


def cmd_hydra(command: str, args: list[str]) -> int:
    """``bnexp train|simulate|inputs|sweep``: run, then report what failed (exit 1 if anything did)."""
    if any(a in ("--help", "-h", "--hydra-help", "--info") or a.startswith("--cfg") for a in args):
        engine = engines.for_args(args, command if command in engines.ENGINES else "train")
        inspect = any(a.startswith(("--cfg", "--info")) for a in args)  # Hydra takes these without --multirun
        launch.hydra_main(engine.config_name, args, multirun=command == "sweep" and not inspect)
        return 0
    return launch.report_sweep(launch.launch(command, args))


# --------------------------------------------------------------------------------------- figures

def _figures(ids: Sequence[str]):
    from bnexp import figures

    return figures.select(ids)


SWEEP_PLOT_OPTIONS = ("x", "y", "hue", "layer", "at", "logx", "logy", "name")


def cmd_plot(ns: argparse.Namespace) -> int:
    from bnexp.figures import MissingRuns
    from bnexp.reproduce import plot_figure

    if ns.exp is not None:
        return cmd_sweep_plot(ns)
    if not ns.figures:
        raise ConfigError("plot", "", "name figure ids (fig3, rank/fig3, rank, all) or --exp NAME for a sweep's runs")
    given = [f"--{key}" for key in SWEEP_PLOT_OPTIONS if getattr(ns, key) not in (None, False, [])]
    if given:
        raise ConfigError(given[0], getattr(ns, given[0][2:]), "goes with --exp NAME (a sweep's own plot), "
                          "not with figure ids")
    failed = 0
    chosen = _figures(ns.figures)
    for fig in chosen:
        try:
            plot_figure(fig, ns.scale)
        except (MissingRuns, CorruptRun) as err:
            print(f"bnexp: {err}", file=sys.stderr)
            if isinstance(err, MissingRuns) and len(chosen) <= 3 and (hint := err.other_scales()):
                print(hint, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_sweep_plot(ns: argparse.Namespace) -> int:
    from bnexp import sweep_plot

    if ns.figures:
        raise ConfigError("plot", " ".join(ns.figures), "give figure ids or --exp NAME, not both")
    if ns.x is None or ns.y is None:
        raise ConfigError("--x" if ns.x is None else "--y", None,
                          "bnexp plot --exp NAME needs --x COLUMN and --y METRIC")
    path = sweep_plot.plot(ns.exp, ns.x, ns.y, hue=ns.hue, layer=ns.layer, at=ns.at, logx=ns.logx, logy=ns.logy,
                           name=ns.name)
    print(f"[bnexp] {ns.exp}: {ns.y} against {ns.x} → {path} (.pdf, and .json with the command)")
    return 0


def cmd_table(ns: argparse.Namespace) -> int:
    from bnexp import sweep_plot

    by = [c for c in ns.by.split(",") if c]
    frame = sweep_plot.table(ns.exp, by, ns.metric, layer=ns.layer, at=ns.at)
    where = " ".join([*(f"--at {a}" for a in ns.at), *([f"--layer {ns.layer}"] if ns.layer is not None else [])])
    print(f"{ns.exp}: {ns.metric}{' ' + where if where else ''} — mean and 95% CI (lo, hi) over seeds")
    print(sweep_plot.format_table(frame))
    if ns.csv:
        Path(ns.csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(ns.csv, index=False)
        print(f"[bnexp] table → {ns.csv}")
    return 0


def _split_ids(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """``reproduce``'s positional arguments: figure ids, and launcher settings ``hydra.launcher.KEY=VALUE``
    (the only overrides allowed there: anything else would change which runs a figure reads)."""
    ids = [a for a in items if "=" not in a]
    overrides = [a for a in items if "=" in a]
    for item in overrides:
        if not item.startswith("hydra.launcher."):
            raise ConfigError("override", item, "reproduce takes figure ids and hydra.launcher.KEY=VALUE settings "
                              "only; change a figure's runs in its figure module or run `bnexp sweep` yourself")
    if not ids:
        raise ConfigError("figures", items, "name at least one figure id (or all)")
    return ids, overrides


def _launcher_args(ns: argparse.Namespace, overrides: Sequence[str] = ()) -> list[str]:
    launcher = [f"hydra/launcher={ns.launcher}"] if ns.launcher else []
    if overrides and not ns.launcher:
        raise ConfigError("override", overrides[0], "hydra.launcher settings need --launcher")
    launcher.extend(overrides)
    if ns.jobs is not None:
        check_int("--jobs", ns.jobs, 1)
        if ns.launcher != "joblib":
            raise ConfigError("--jobs", ns.jobs, "needs --launcher joblib (other launchers take "
                              "hydra.launcher.* settings in their config group)")
        launcher.append(f"hydra.launcher.n_jobs={ns.jobs}")
    return launcher


def _data_root(ns: argparse.Namespace) -> None:
    if getattr(ns, "data_root", None):  # every config's data.root defaults to $BNEXP_DATA
        os.environ["BNEXP_DATA"] = str(Path(ns.data_root).expanduser().resolve())


def cmd_reproduce(ns: argparse.Namespace) -> int:
    from bnexp import reproduce

    _data_root(ns)
    ids, overrides = _split_ids(ns.figures)
    figs = _figures(ids)
    outcomes = reproduce.reproduce(figs, ns.scale, launcher=_launcher_args(ns, overrides), dry_run=ns.dry_run)
    return 0 if ns.dry_run else reproduce.print_summary(outcomes, ns.scale)


def print_make_targets(figs) -> None:
    """The lines ``make help`` appends: one make target per paper and per figure (the Makefile's pattern rules
    ``<paper>-%``), each figure's with its expected cost at quick and paper scale."""
    papers = list(dict.fromkeys(fig.paper for fig in figs))
    for paper in papers:
        count = sum(fig.paper == paper for fig in figs)
        print(f"  {paper:14s} every {paper} figure ({count}) (SCALE=quick|paper)")
    for fig in figs:
        alias = f" (= {fig.alias_of})" if fig.alias_of else ""
        print(f"  {fig.id.replace('/', '-'):14s} {fig.id}{alias}: quick {fig.cost('quick')}; paper {fig.cost('paper')}")


def cmd_figures(ns: argparse.Namespace) -> int:
    if ns.targets:
        print_make_targets(_figures(ns.figures or ["all"]))
        return 0
    for fig in _figures(ns.figures or ["all"]):
        states = fig.run_states(ns.scale) if ns.scale in fig.runs else []
        counts = Counter(state for *_, state in states)
        runs = ", ".join(f"{counts[s]} {s}" for s in ("done", "running", "failed", "interrupted", "missing")
                         if counts[s] or s == "done")
        claims = "-"
        claims_file = fig.output_stem().with_suffix(".claims.json")
        if claims_file.exists():
            rec = json.loads(claims_file.read_text())
            ok = sum(c["passed"] for c in rec["claims"])
            claims = f"{ok}/{len(rec['claims'])} pass ({rec['scale']})"
        alias = f" (= {fig.alias_of})" if fig.alias_of else ""
        print(f"{fig.id:15s} {fig.kind:6s} {len(states):3d} runs ({ns.scale}): {runs:34s} claims {claims:18s} "
              f"{fig.title}{alias}")
        if ns.runs:
            for name, overrides, directory, state in states:
                print(f"    {state:11s} [{name}] {directory}  {' '.join(overrides[1:])}")
    return 0


def cmd_data(ns: argparse.Namespace) -> int:
    """``bnexp data``: make the named datasets (default: those the figures need at ``--scale``) available."""
    from bnexp.data import obtain, vision

    _data_root(ns)
    if not ns.names:
        print(f"[bnexp] finding the datasets that the {ns.scale}-scale figures read …", flush=True)
    names = ns.names or sorted({name for fig in _figures(["all"]) for name in fig.datasets(ns.scale)})
    for name in names:
        if name not in vision.SPECS:
            raise ConfigError("dataset", name, sorted(vision.SPECS))
    root = os.environ.get("BNEXP_DATA", "data")
    got = [obtain.obtain(name, root, use_apt=not ns.no_apt, download=not ns.no_download,
                         log=lambda line: print(f"[bnexp] {line}", flush=True)) for name in names]
    if not names:
        print(f"[bnexp] the {ns.scale}-scale figures need no real dataset")
    return 0 if all(g is not None for g in got) else 1


def cmd_report(ns: argparse.Namespace) -> int:
    from bnexp.report import write_report

    path = write_report()
    if not any((path.parent.parent / "figures").glob("*/*.claims.json")):
        print(f"[bnexp] no figure has been reproduced under {path.parent.parent} (BNEXP_OUTPUTS) yet: the report "
              "lists every figure as not run; `bnexp reproduce <id>` makes one", file=sys.stderr)
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
    plot = sub.add_parser("plot", help="regenerate figures from saved runs (no training), or plot a sweep (--exp)")
    plot.add_argument("figures", nargs="*", help="ids like fig3, rank/fig3, markov/table1, rank, all")
    plot.add_argument("--scale", **scale)
    column = "a column of the runs: seed, step, layer or a config key (model.depth; norm for norm.name)"
    where = {"layer": {"default": None, "metavar": "N|last",
                       "help": "keep one layer: an index or last (each run's deepest)"},
             "at": {"action": "append", "default": [], "metavar": "COL=V",
                    "help": "keep rows where COL is V (V1,V2: any of them; step=first|last); repeatable"}}
    plot.add_argument("--exp", default=None, metavar="NAME", help="plot the runs of this experiment, not a figure")
    plot.add_argument("--x", default=None, metavar="COL", help=f"x axis: {column}")
    plot.add_argument("--y", default=None, metavar="METRIC", help="the metric on the y axis (e.g. soft_rank)")
    plot.add_argument("--hue", default=None, metavar="COL", help=f"one band per value of this column: {column}")
    for flag, kw in where.items():
        plot.add_argument(f"--{flag}", **kw)
    plot.add_argument("--logx", action="store_true", help="logarithmic x axis")
    plot.add_argument("--logy", action="store_true", help="logarithmic y axis")
    plot.add_argument("--name", default=None, help="file name under outputs/runs/EXP/plots/ (default: from the query)")
    table = sub.add_parser("table", help="mean, 95%% CI and seed count of a metric per group of a sweep's runs")
    table.add_argument("--exp", required=True, metavar="NAME", help="the experiment whose runs to read")
    table.add_argument("--by", required=True, metavar="COL,...", help=f"group by these columns: {column}")
    table.add_argument("--metric", required=True, help="the metric to summarise (e.g. soft_rank)")
    for flag, kw in where.items():
        table.add_argument(f"--{flag}", **kw)
    table.add_argument("--csv", default=None, metavar="PATH", help="also write the table as CSV to PATH")
    rep = sub.add_parser("reproduce", help="run the runs figures still lack, then plot them")
    rep.add_argument("figures", nargs="+", metavar="FIG|hydra.launcher.KEY=VALUE",
                     help="figure ids (fig3, rank/fig3, rank, all), then launcher settings")
    rep.add_argument("--scale", **scale)
    rep.add_argument("--launcher", default=None,
                     help="Hydra launcher: basic (default), joblib, submitit_local, slurm, submitit_slurm")
    rep.add_argument("--jobs", type=int, default=None, help="parallel jobs for the joblib launcher")
    rep.add_argument("--dry-run", action="store_true", help="print the sweeps without running them")
    rep.add_argument("--data-root", default=None, help="where the real datasets are (sets $BNEXP_DATA)")
    figs = sub.add_parser("figures", help="list every figure with its runs and claims")
    figs.add_argument("figures", nargs="*", help="ids (default: all)")
    figs.add_argument("--scale", **scale)
    figs.add_argument("--runs", action="store_true", help="list each run with its state and directory")
    figs.add_argument("--targets", action="store_true",
                      help="list the make targets (make <paper>, make <paper>-<fig>) with each figure's costs")
    data = sub.add_parser("data", help="get the real datasets the figures need (apt, torchvision download)")
    data.add_argument("names", nargs="*", help="datasets (default: those the figures need at --scale)")
    data.add_argument("--scale", **scale)
    data.add_argument("--data-root", default=None, help="torchvision root to fill (sets $BNEXP_DATA)")
    data.add_argument("--no-apt", action="store_true", help="do not try Debian's packages")
    data.add_argument("--no-download", action="store_true", help="do not try torchvision's download")
    sub.add_parser("report", help="outputs/report/index.html: every plotted figure and its claims")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HYDRA_COMMANDS:
            return cmd_hydra(argv[0], argv[1:])
        parser = _parser()
        ns, extra = parser.parse_known_args(argv)
        if extra and ns.command == "reproduce":  # launcher settings may follow options: `... all --launcher slurm
            ns.figures += extra                    # hydra.launcher.partition=gpu`; _split_ids checks them
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return {"plot": cmd_plot, "table": cmd_table, "reproduce": cmd_reproduce, "figures": cmd_figures,
                "data": cmd_data, "report": cmd_report}[ns.command](ns)
    except ConfigError as err:
        print(f"bnexp: error: {err}", file=sys.stderr)
        return 2
    except CorruptRun as err:
        print(f"bnexp: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbnexp: interrupted. Finished runs are kept; the same command again redoes only the unfinished ones "
              "(a training run resumes from its last checkpoint).", file=sys.stderr)
        return 130
    except Exception as err:  # Hydra's own config errors: unknown group option, unknown key
        if type(err).__module__.startswith(("hydra", "omegaconf")):
            text = str(err).split("\nConfig search path:")[0]  # (where Hydra looked: noise for a mistyped option)
            print(f"bnexp: error: {text}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

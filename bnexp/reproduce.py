"""``bnexp plot`` and ``bnexp reproduce``: figures from saved runs, and whole reproductions that report.

:func:`plot_figure` draws one figure from its finished runs and checks its claims (``png``, ``pdf``,
``claims.json`` with the run metadata; tables also ``csv``/``md``). :func:`reproduce` does, for each figure in
turn, whatever it still lacks — its datasets (skipped, with the command that gets them, when they cannot be
had), its sweeps (a failed run does not stop the others), its plot and claims — and never stops at a figure
that fails: every figure gets a :class:`FigureOutcome` (done / failed / skipped, claims passed, wall time,
the error's first line), :func:`summary_table` prints them, and the outcomes are saved to
``outputs/figures/reproduce-<scale>.json``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bnexp import launch, results
from bnexp.errors import ConfigError, CorruptRun


def plot_figure(fig, scale: str) -> dict:
    """Plot ``fig`` from saved runs and check its claims; writes png, pdf and claims.json (returned)."""
    from bnexp import figures
    from bnexp.figures import style
    from bnexp.report import markdown_table

    present = figures.finished_runs(fig, scale)
    frames = {name: results.load_runs(dirs) for name, dirs in present.items()}
    figure = fig.plot(frames, scale)
    stem = fig.output_stem()
    paths = style.save(figure, stem)
    claims = fig.claims(frames, scale)
    record = {"id": fig.id, "title": fig.title, "scale": scale, "caption": fig.caption,
              "alias_of": fig.alias_of, "commands": fig.commands(scale),
              "claims": [c.to_dict() for c in claims],
              "runs": {name: sorted(df["run"].unique().tolist()) for name, df in frames.items()},
              "meta": results.run_metadata([d for dirs in present.values() for d in dirs])}
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


@dataclass
class FigureOutcome:
    """What became of one figure in a reproduction."""

    id: str
    status: str  # done (every claim passes) | failed | skipped (its data cannot be had here)
    passed: int | None = None  # claims passing
    total: int | None = None  # claims checked
    wall_s: float = 0.0
    error: str = ""  # the first line of what went wrong, or what to run to get the missing data


def missing_data(fig, scale: str, attempted: dict, log: Callable[[str], None]) -> list[str]:
    """The real datasets ``fig`` needs at ``scale`` that are not on this machine and cannot be had, each as
    "<name>: get it with <command>". Where a run would download its data (``data.download``), one download is
    tried per dataset and root (``attempted`` remembers the answers across figures)."""
    from bnexp.data import obtain, vision

    missing = []
    for grid in fig.grids(scale).values():
        for cfg in grid.configs():
            data = cfg.get("data") or {}
            name = data.get("name")
            if name not in vision.SPECS:
                continue
            key = (name, str(data.root), bool(data.get("download", True)))
            if key not in attempted:
                found = vision.find(vision.SPECS[name], Path(key[1]))
                if found is None and key[2]:
                    found = obtain.obtain(name, key[1], use_apt=False, download=True, log=log)
                attempted[key] = None if found is not None else (f"{name}: get it with `{obtain.hint(name, key[1])}`"
                                                                 f"{obtain.hint_note(name, key[1])}")
            if attempted[key] and attempted[key] not in missing:
                missing.append(attempted[key])
    return missing


def reproduce(figs: Sequence, scale: str, *, launcher: Sequence[str] = (),
              dry_run: bool = False) -> list[FigureOutcome]:
    """Reproduce each figure in turn (see the module doc); returns one outcome per figure (none on a dry run)."""
    ran: dict[str, list[launch.RunOutcome]] = {}  # sweep command → its runs' outcomes (aliases share runs)
    attempted: dict = {}
    outcomes = []
    for fig in figs:
        start = time.time()
        if dry_run:
            for grid in fig.grids(scale).values():
                print(f"[bnexp] {fig.id}: {grid.command()}", flush=True)
            continue
        try:
            outcome = _reproduce_one(fig, scale, launcher, ran, attempted)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # anything else: this figure failed, the next ones still run
            traceback.print_exc()
            outcome = FigureOutcome(fig.id, "failed", error=_first_line(err))
        outcome.wall_s = round(time.time() - start, 1)
        outcomes.append(outcome)
        print(f"[bnexp] {fig.id}: {outcome.status} in {outcome.wall_s:.0f} s"
              + (f" — {outcome.error}" if outcome.error else ""), flush=True)
    return outcomes


def _reproduce_one(fig, scale: str, launcher: Sequence[str], ran: dict, attempted: dict) -> FigureOutcome:
    from bnexp.figures import MissingRuns

    missing = missing_data(fig, scale, attempted, log=lambda line: print(f"[bnexp] {line}", flush=True))
    if missing:
        return FigureOutcome(fig.id, "skipped", error="needs data: " + "; ".join(missing))
    for grid in fig.grids(scale).values():
        command = grid.command()
        if command not in ran:
            print(f"[bnexp] {fig.id}: {command}", flush=True)
            ran[command] = launch.launch("sweep", [*grid.sweep_args(), *launcher])
            launch.report_sweep(ran[command])
    try:
        record = plot_figure(fig, scale)
    except (MissingRuns, CorruptRun) as err:
        failed = [o for cmd in fig.commands(scale) for o in ran.get(cmd, []) if o.state != "done"]
        first = failed[0] if failed else None
        why = (first.error or first.state).strip().splitlines()[-1] if first else _first_line(err)
        return FigureOutcome(fig.id, "failed", error=f"{len(failed) or 'some'} run(s) not done: {why}"
                             if failed else why)
    claims = record["claims"]
    passed = sum(c["passed"] for c in claims)
    bad = next((c for c in claims if not c["passed"]), None)
    error = f"claim fails: {bad['statement']} (measured {bad['measured']:.4g}, needs {bad['expected']})" if bad else ""
    return FigureOutcome(fig.id, "done" if bad is None else "failed", passed, len(claims), error=error)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}" if not isinstance(err, ConfigError) else lines[0]


def summary_table(outcomes: Sequence[FigureOutcome]) -> str:
    """One line per figure: id, status, claims passed/total, wall time, the error's first line; then totals."""
    lines = [f"{'figure':16s} {'status':8s} {'claims':>7s} {'wall':>10s}  error / what to do",
             f"{'-' * 16} {'-' * 8} {'-' * 7} {'-' * 10}  {'-' * 20}"]
    for o in outcomes:
        claims = f"{o.passed}/{o.total}" if o.total is not None else "-"
        lines.append(f"{o.id:16s} {o.status:8s} {claims:>7s} {_duration(o.wall_s):>10s}  {o.error}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "failed", "skipped")}
    passed = sum(o.passed or 0 for o in outcomes)
    total = sum(o.total or 0 for o in outcomes)
    wall = sum(o.wall_s for o in outcomes)
    lines.append(f"{len(outcomes)} figure(s): {counts['done']} done, {counts['failed']} failed, "
                 f"{counts['skipped']} skipped; claims {passed}/{total} pass; {_duration(wall)} in all")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def save_outcomes(outcomes: Sequence[FigureOutcome], scale: str, root: Path | None = None) -> Path:
    """``outputs/figures/reproduce-<scale>.json``: the outcomes of the last reproduction at that scale, merged
    by figure with earlier ones (a reproduction of one figure updates only its line)."""
    root = results.outputs_root() if root is None else Path(root)
    path = root / "figures" / f"reproduce-{scale}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        known = {o["id"]: o for o in json.loads(path.read_text())}
    except (OSError, ValueError, TypeError, KeyError):
        known = {}
    known.update({o.id: asdict(o) for o in outcomes})
    path.write_text(json.dumps(list(known.values()), indent=2))
    return path


def print_summary(outcomes: Sequence[FigureOutcome], scale: str) -> int:
    """Print the table and save the outcomes; 1 if any figure failed, else 0."""
    print("\n" + summary_table(outcomes), flush=True)
    skipped = [o for o in outcomes if o.status == "skipped"]
    if skipped:
        print(f"[bnexp] {len(skipped)} figure(s) skipped for want of data; `make data` (or the command in each "
              "line) gets it, then rerun the same command", flush=True)
    path = save_outcomes(outcomes, scale)
    print(f"[bnexp] outcomes → {path}", flush=True)
    failed = [o.id for o in outcomes if o.status == "failed"]
    if failed:
        print(f"[bnexp] {len(failed)} figure(s) failed: {' '.join(failed)}", file=sys.stderr, flush=True)
    return 1 if failed else 0

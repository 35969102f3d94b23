"""Figures as data: the runs each figure needs per scale, its plot, and its claims.

A :class:`Figure` names, for every scale (``smoke`` for tests, ``quick`` for a CPU in minutes, ``paper`` for
the paper's sizes, seeds and run counts), the runs it reads as :class:`RunGrid` s (an experiment config plus
overrides and a grid). ``plot`` turns the loaded runs into a matplotlib figure (mean and 95% CI over seeds);
``claims`` turns them into :class:`Claim` s: a number computed from our runs compared with the paper's
statement under an explicit tolerance; next to them the figure declares the paper's own caption
(:class:`PaperCaption`) and its expected cost per scale (:class:`Costs`). Figure files
(``bnexp/figures/<paper>/<family>.py``, one per family of figures) register their figures in :data:`REGISTRY`
when imported; every module under this package is imported (:func:`all_figures`), so a new figure file needs no
list. Ids are ``<paper>/<fig>``, and a bare ``figN`` means ``rank/figN``. The shared pieces:
:mod:`bnexp.figures.style` (the look of every choice), :mod:`bnexp.figures.stats`
(selection and mean ± CI of loaded runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd

from bnexp import results
from bnexp.errors import ConfigError
from bnexp.figures.figure import SCALES, Claim, Costs, Figure, Frames, PaperCaption, RunGrid

__all__ = ["PAPERS", "REGISTRY", "SCALES", "Claim", "Costs", "Figure", "Frames", "MissingRuns", "PaperCaption",
           "RunGrid", "all_figures", "finished_runs", "frames_for", "get", "not_yet", "register", "select"]

# The order of listings: the papers' order in the README, then ``beyond`` (the same measurements beyond the papers:
# other normalisations, attention; no paper of its own, so no inventory entry in the shared list of the papers' figures)
PAPERS = ("rank", "markov", "ortho", "depth", "lowrank", "beyond")

REGISTRY: dict[str, Figure] = {}


@lru_cache(maxsize=1)
def not_yet() -> dict[str, str]:
    """The papers' figures bnexp does not reproduce yet, with what each needs: ``{id: what}``."""
    import yaml  # plain YAML (PyYAML, which Hydra needs)

    return yaml.safe_load(Path(__file__).with_name("not_yet.yaml").read_text(encoding="utf-8")) or {}


def register(*figures: Figure) -> None:
    for fig in figures:
        if fig.id in REGISTRY:
            raise ValueError(f"figure {fig.id} registered twice")
        REGISTRY[fig.id] = fig


def _load_modules() -> None:
    """Import every module of this package and its sub-packages (one per paper): a figure file registers its
    figures when imported, so a new file is found without being listed anywhere."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
        importlib.import_module(info.name)


def _order(fig: Figure) -> tuple:
    """Papers in :data:`PAPERS` order, then figures before tables, by number (fig2 < fig10), then appendix ids."""
    import re

    paper = PAPERS.index(fig.paper) if fig.paper in PAPERS else len(PAPERS)
    m = re.fullmatch(r"(fig|table)([A-Z]?)(\d+)", fig.name)
    return (paper, fig.paper, *((m[1] == "table", m[2], int(m[3])) if m else (True, fig.name, 0)))


def all_figures() -> list[Figure]:
    """Every registered figure, in a fixed order (paper, then figure number)."""
    _load_modules()
    return sorted(REGISTRY.values(), key=_order)


def resolve_id(fig_id: str) -> str:
    """``fig3`` → ``rank/fig3``; ``markov/fig2`` stays."""
    return fig_id if "/" in fig_id else f"rank/{fig_id}"


def get(fig_id: str) -> Figure:
    _load_modules()
    full = resolve_id(fig_id)
    if full not in REGISTRY:
        raise ConfigError("figure", fig_id, sorted(REGISTRY))
    return REGISTRY[full]


def select(ids: Sequence[str]) -> list[Figure]:
    """Figures named by ``ids``; ``all`` means every registered figure, ``rank`` every figure of a paper."""
    figures = all_figures()
    chosen: list[Figure] = []
    for fig_id in ids:
        if fig_id == "all":
            chosen.extend(figures)
        elif fig_id in {f.paper for f in figures}:
            chosen.extend(f for f in figures if f.paper == fig_id)
        else:
            chosen.append(get(fig_id))
    unique: dict[str, Figure] = {}
    for fig in chosen:
        unique.setdefault(fig.id, fig)  # keep order, drop repeats
    return list(unique.values())


def finished_runs(figure: Figure, scale: str) -> dict[str, list[Path]]:
    """The run directories of every grid of ``figure`` at ``scale``; :class:`MissingRuns` if any is not done."""
    present, missing = figure.status(scale)
    if missing:
        raise MissingRuns(figure, scale, missing)
    return present


def frames_for(figure: Figure, scale: str) -> dict[str, pd.DataFrame]:
    """The loaded runs of every grid of ``figure`` at ``scale``, as its plot and claims functions take them."""
    return {name: results.load_runs(dirs) for name, dirs in finished_runs(figure, scale).items()}


class MissingRuns(RuntimeError):
    """Raised by ``bnexp plot`` when runs are missing; says which, and the command that makes them."""

    def __init__(self, figure: Figure, scale: str, missing: list[tuple[str, list[str]]]):
        self.figure, self.scale, self.missing = figure, scale, missing
        lines = [f"{figure.id} at scale {scale!r} lacks {len(missing)} run(s):"]
        for name, overrides in missing[:20]:
            lines.append(f"  [{name}] " + " ".join(overrides))
        if len(missing) > 20:
            lines.append(f"  ... and {len(missing) - 20} more")
        lines.append("Make them with:")
        lines.append(f"  bnexp reproduce {figure.id} --scale {scale}")
        lines.append("or run the sweeps directly:")
        lines.extend(f"  {cmd}" for cmd in figure.commands(scale))
        super().__init__("\n".join(lines))

    def other_scales(self) -> str:
        """A line naming the figure's other scales whose runs are all done (the user may have made them and
        left out --scale), or "". Composes those scales' grids: seconds, so only for figures named one by one."""
        complete = [s for s in SCALES if s != self.scale and s in self.figure.runs
                    and not self.figure.status(s)[1]]
        if not complete:
            return ""
        return (f"Its runs at scale {', '.join(complete)} are all done: "
                f"bnexp plot {self.figure.id} --scale {complete[0]}")

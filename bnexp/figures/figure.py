"""What a figure is, as data: :class:`RunGrid` (the runs of one experiment: overrides and a grid), :class:`Claim`
(a number from our runs against the paper's statement under an explicit tolerance), :class:`PaperCaption` (the
paper's own caption, quoted), :class:`Costs` (what reproducing it costs per scale) and :class:`Figure` (the runs per
scale, the plot, the claims, the captions, the costs). Registered figures: :mod:`bnexp.figures`."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from omegaconf import OmegaConf

from bnexp import config, engines, results
from bnexp.errors import ConfigError

SCALES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class RunGrid:
    """The runs of one experiment: fixed overrides plus a grid swept as a Hydra multirun.

    Keys the grid leaves out keep the experiment's own sweep (``hydra.sweeper.params``), exactly as
    ``bnexp sweep`` would run them.
    """

    exp: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def full_grid(self) -> dict[str, list[str]]:
        grid = config.experiment_grid(self.exp)
        grid.update({k: [config.override_value(v) for v in vs] for k, vs in self.grid.items()})
        for key in self.overrides:
            grid.pop(key, None)
        return grid

    def fixed_overrides(self) -> list[str]:
        return [f"+exp={self.exp}"] + [f"{k}={config.override_value(v)}" for k, v in self.overrides.items()]

    def sweep_args(self) -> list[str]:
        """Arguments of ``bnexp sweep`` that run exactly these runs."""
        sweep = [f"{k}={','.join(config.override_value(v) for v in vs)}" for k, vs in self.grid.items()]
        return self.fixed_overrides() + sweep

    def command(self) -> str:
        return "bnexp sweep " + " ".join(shlex.quote(a) for a in self.sweep_args())

    def override_sets(self) -> list[list[str]]:
        """One override list per run of the grid."""
        return [self.fixed_overrides() + combo for combo in config.expand_grid(self.full_grid())]

    def configs(self) -> list:
        """The composed config of every run (read-only: they are shared between callers).

        Composing takes tens of milliseconds a run and a reproduction asks for the same grids several times
        (data check, run states, plot), so the configs are kept per grid and per environment (the outputs and
        data roots and the config directory come from environment variables)."""
        key = (self.command(), *(os.environ.get(v) for v in ("BNEXP_OUTPUTS", "BNEXP_DATA", "BNEXP_CONFIG_DIR")))
        if key not in _COMPOSED:
            engine = engines.for_experiment(self.exp).config_name
            composed = [config.compose(engine, overrides) for overrides in self.override_sets()]
            for cfg in composed:
                OmegaConf.set_readonly(cfg, True)
            _COMPOSED[key] = composed
        return _COMPOSED[key]

    def data_configs(self) -> list:
        """One composed config per value of the grid's data keys (``data=…``, ``data.*``): what a question about
        the data (which datasets the runs read) needs, without composing every run of the grid."""
        grid = {k: vs for k, vs in self.full_grid().items() if k.lstrip("+~").split(".")[0] == "data"}
        engine = engines.for_experiment(self.exp).config_name
        return [config.compose(engine, self.fixed_overrides() + combo) for combo in config.expand_grid(grid)]


_COMPOSED: dict[tuple, list] = {}  # RunGrid.configs, per grid command and environment


@dataclass
class Claim:
    """A statement of the paper checked against a number measured from our runs."""

    statement: str  # what the paper claims, in words
    paper: str  # the paper's value or statement (quoted, not computed)
    measured: float  # computed from our runs
    expected: str  # the acceptance rule with its tolerance, e.g. "∈ [0.45, 0.80]"
    passed: bool

    @classmethod
    def within(cls, statement: str, measured: float, lo: float, hi: float, paper: str) -> Claim:
        ok = math.isfinite(measured) and lo <= measured <= hi
        return cls(statement, paper, float(measured), f"∈ [{lo:g}, {hi:g}]", ok)

    @classmethod
    def at_least(cls, statement: str, measured: float, bound: float, paper: str) -> Claim:
        ok = not math.isnan(measured) and measured >= bound
        return cls(statement, paper, float(measured), f"≥ {bound:g}", ok)

    @classmethod
    def at_most(cls, statement: str, measured: float, bound: float, paper: str) -> Claim:
        ok = not math.isnan(measured) and measured <= bound
        return cls(statement, paper, float(measured), f"≤ {bound:g}", ok)

    @classmethod
    def above(cls, statement: str, measured: float, bound: float, paper: str) -> Claim:
        return cls(statement, paper, float(measured), f"> {bound:g}", not math.isnan(measured) and measured > bound)

    @classmethod
    def below(cls, statement: str, measured: float, bound: float, paper: str) -> Claim:
        return cls(statement, paper, float(measured), f"< {bound:g}", not math.isnan(measured) and measured < bound)

    def __post_init__(self) -> None:
        self.measured, self.passed = float(self.measured), bool(self.passed)  # plain JSON types, never numpy

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "paper": self.paper, "measured": self.measured,
                "expected": self.expected, "passed": self.passed}


class PaperCaption(NamedTuple):
    """A figure's caption in its paper, quoted (the report shows it next to our plot): the text as published,
    line wraps joined; math garbled by the PDF's text restored only where unambiguous. Unpacks as (label, text)."""

    label: str  # the paper's own numbering: "Figure 3", "Table 1"
    text: str


@dataclass(frozen=True)
class Costs:
    """The expected cost of ``bnexp reproduce <id> --scale <scale>`` from scratch (``make help``, docs/cluster.md).

    ``quick`` is measured on a 2-core CPU (Hydra start-up and plotting included; a figure sharing another's runs
    costs nothing once that one is done); ``paper`` is measured on a 2-core CPU where it says so, else estimated
    from the grid (the training figures want one GPU per run); ``data`` is what the runs read; ``basis`` says how
    the paper-scale number was measured or estimated. The number of runs is not written here: it is counted from
    the paper-scale grids (:meth:`Figure.run_count`).
    """

    quick: str
    paper: str
    data: str
    basis: str

    def at(self, scale: str) -> str:
        return {"quick": self.quick, "paper": self.paper}.get(scale, "not estimated")


Frames = Mapping[str, pd.DataFrame]


@dataclass
class Figure:
    """One figure or table of a paper."""

    id: str  # "<paper>/<fig>"
    title: str
    caption: str  # what is plotted and every decision on an ambiguity or deviation from the paper
    runs: Mapping[str, Mapping[str, RunGrid]]  # scale → {name: RunGrid}
    plot: Callable[[Frames, str], Any]  # (frames, scale) → matplotlib Figure
    claims: Callable[[Frames, str], list[Claim]]  # (frames, scale) → claims
    kind: str = "init"
    alias_of: str | None = None  # the figure of the other paper version showing the same experiment
    table: Callable[[Frames, str], pd.DataFrame] | None = None  # tables also get .csv and .md files
    paper_caption: PaperCaption | None = None  # the paper's own caption (tests require one)
    costs: Costs | None = None  # expected cost per scale (tests require them)

    @property
    def paper(self) -> str:
        return self.id.split("/")[0]

    @property
    def name(self) -> str:
        return self.id.split("/")[1]

    def grids(self, scale: str) -> Mapping[str, RunGrid]:
        if scale not in SCALES:
            raise ConfigError("--scale", scale, SCALES)
        if scale not in self.runs:
            raise ConfigError("--scale", scale, list(self.runs))
        return self.runs[scale]

    def run_states(self, scale: str) -> list[tuple[str, list[str], Path, str]]:
        """Every run of the figure at ``scale``: (grid name, overrides, run directory, state), the state as
        :func:`bnexp.results.run_state` gives it (done, running, failed, interrupted, missing)."""
        out = []
        for name, grid in self.grids(scale).items():
            for overrides, cfg in zip(grid.override_sets(), grid.configs()):
                directory = results.run_dir(cfg)
                out.append((name, overrides, directory, results.run_state(directory)))
        return out

    def status(self, scale: str) -> tuple[dict[str, list[Path]], list[tuple[str, list[str]]]]:
        """(run directories present per grid name, missing runs as (grid name, overrides))."""
        present: dict[str, list[Path]] = {name: [] for name in self.grids(scale)}
        missing: list[tuple[str, list[str]]] = []
        for name, overrides, directory, state in self.run_states(scale):
            if state == "done":
                present[name].append(directory)
            else:
                missing.append((name, overrides))
        return present, missing

    def datasets(self, scale: str) -> list[str]:
        """The real datasets (``data.name`` of a torchvision format) the runs at ``scale`` read."""
        from bnexp.data import vision

        names = {cfg.data.name for grid in self.grids(scale).values() for cfg in grid.data_configs()
                 if "data" in cfg and cfg.data.get("name") in vision.SPECS}
        return sorted(names)

    def commands(self, scale: str) -> list[str]:
        return [grid.command() for grid in self.grids(scale).values()]

    def cost(self, scale: str) -> str:
        """The expected cost of ``bnexp reproduce <id> --scale <scale>`` from scratch (:class:`Costs`)."""
        return self.costs.at(scale) if self.costs else "not estimated"

    def run_count(self, scale: str = "paper") -> int:
        """How many distinct runs the figure reads at ``scale`` (a SLURM array's size), counted from its grids
        without composing them; a run two grids share (the same overrides) counts once."""
        return len({frozenset(o) for grid in self.grids(scale).values() for o in grid.override_sets()})

    def output_stem(self, root: Path | None = None) -> Path:
        root = results.outputs_root() if root is None else Path(root)
        return root / "figures" / self.paper / self.name

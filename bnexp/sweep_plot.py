"""``bnexp plot --exp`` and ``bnexp table``: plots and tables of one's own sweep.

After ``bnexp sweep +exp=init_depth model.depth=2,4,8,16 norm=bn_torch,none`` the runs of ``init_depth`` are one
frame (:func:`bnexp.results.load`): rows ``seed, step, layer, metric, value`` joined with each run's flattened
config (``model.depth``, ``norm.name``, ...) and its ``run.json`` facts (``run.device``, ...). A query names

* columns of that frame (``--x``, ``--hue``, ``--by``, the keys of ``--at``). A config group may be written bare:
  ``norm`` means ``norm.name`` (as do ``model``, ``act``, ``init``, ``data``, ``optim``: any ``G`` that is not a
  column itself while ``G.name`` is);
* one metric (``--y``, ``--metric``): the ``metric`` of the rows;
* filters, applied in order: ``--at COLUMN=VALUE`` (``VALUE`` may be ``v1,v2``: any of them; ``step=first`` and
  ``step=last`` keep each run's first or last logged step; ``layer=last`` each run's deepest measured layer),
  then ``--layer N|last`` (the same as ``--at layer=N``).

Each point of a plot and each group of a table is the mean over seeds with its 95% bootstrap CI
(:func:`bnexp.figures.stats.summarize`), so after the filters a seed must hold one row per point: where rows
of one seed differ in a column the query leaves open (a layer, a step, a config value the sweep varies), the
query is refused with the columns and the options that choose among them. Every wrong name (experiment, column,
metric) and a filter that leaves no rows raise :class:`~bnexp.errors.ConfigError` listing the valid names.

A plot is drawn with the paper figures' helpers (``style.new_figure``, ``style.band``, ``style.of`` for a hue that
is a styled config group, ``style.series`` otherwise) and written next to the runs:
``<outputs>/runs/<exp>/plots/<name>.png`` and ``.pdf``, with ``<name>.json`` holding the command that made it,
the runs it read and the plotted points.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from bnexp import results
from bnexp.errors import ConfigError
from bnexp.figures import stats, style

ROW_COLUMNS = ("seed", "step", "layer")  # the columns of metrics.csv a query may name (metric, value: its own options)
# columns a query may name but that are not a run's settings, so messages do not list them: run.json facts, where
# the run was written, how it was computed (runtime.* is not part of a run's identity)
HIDDEN = ("run.", "paths.", "runtime.")


# --------------------------------------------------------------------------------------- loading and names

def experiments_with_runs(root: Path) -> list[str]:
    """The experiments with at least one finished run under ``<root>/runs``."""
    runs = Path(root) / "runs"
    if not runs.is_dir():
        return []
    return sorted(d.name for d in runs.iterdir()
                  if d.is_dir() and any(results.is_done(r) for r in d.iterdir() if r.is_dir()))


def load_sweep(exp: str, root: Path | None = None) -> pd.DataFrame:
    """Every finished run of ``exp`` as one frame; an experiment without finished runs raises, listing those
    that have some."""
    root = results.outputs_root() if root is None else Path(root)
    df = results.load(exp, root=root)
    if df.empty:
        known = experiments_with_runs(root)
        have = f"experiments with runs: {', '.join(known)}" if known else "no experiment has finished runs there yet"
        raise ConfigError("--exp", exp, f"no finished runs under {root / 'runs' / exp}; {have}; "
                                        f"make them with `bnexp sweep +exp={exp} ...`")
    return df


def config_columns(df: pd.DataFrame) -> list[str]:
    """The settings columns of a loaded frame: its flattened config less paths and runtime (no row fields, no
    run.json facts)."""
    return [c for c in df.columns if c not in (*results.COLUMNS, "run") and not c.startswith(HIDDEN)]


def varying_columns(df: pd.DataFrame) -> list[str]:
    """The config columns whose value differs between the runs of ``df`` (what the sweep swept)."""
    cols = config_columns(df)
    per_run = df.drop_duplicates("run")[cols]
    return [c for c in cols if per_run[c].astype(str).nunique() > 1]


def resolve(df: pd.DataFrame, name: str, option: str, exp: str) -> str:
    """The column ``name`` stands for: itself, or ``name.name`` for a bare config group (``norm`` → ``norm.name``).
    An unknown name raises, listing the columns (those the sweep varies first)."""
    if name in df.columns and name not in ("metric", "value"):
        return name
    if f"{name}.name" in df.columns:
        return f"{name}.name"
    varying = varying_columns(df)
    others = [c for c in (*ROW_COLUMNS, *config_columns(df)) if c not in varying]
    close = difflib.get_close_matches(name, [*varying, *others], n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    shown = ", ".join(f"{c} ({c[:-5]})" if c.endswith(".name") else c for c in varying) or "nothing"
    raise ConfigError(option, name, f"not a column of the runs of {exp}; {hint}the sweep varies {shown}; "
                                    f"other columns: {', '.join(others)}")


def _values(series: pd.Series, limit: int = 12) -> str:
    """The distinct values of a column, for a message."""
    values = sorted({_text(v) for v in series}, key=_natural)
    more = f", … ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _natural(text: str):
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _text(value) -> str:
    """A cell as a filter value is written: ``null``, ``true``/``false``, ``4`` for 4.0, else ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null" if value is None else "nan"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return f"{value:.0f}"
    return str(value)


# --------------------------------------------------------------------------------------- selection

def select(df: pd.DataFrame, exp: str, metric: str, option: str, *, layer: str | None = None,
           at: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of ``metric`` kept by the ``--at`` filters, then by ``--layer``; each filter that leaves no rows
    raises, naming itself and the values the column held."""
    metrics = sorted(df["metric"].unique())
    if metric not in metrics:
        close = difflib.get_close_matches(metric, metrics, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(option, metric, f"no such metric in the runs of {exp}; {hint}metrics: {', '.join(metrics)}")
    sub = stats.pick(df, metric)
    filters = [("--at", item) for item in at]
    if layer is not None:
        if layer != "last" and not re.fullmatch(r"\d+", str(layer)):
            raise ConfigError("--layer", layer, "give a layer index (0, 1, ...) or last")
        if sub["layer"].isna().all():
            raise ConfigError("--layer", layer, f"{metric} is measured for the whole network (it has no layer)")
        filters.append(("--layer", f"layer={layer}"))
    applied: list[str] = []
    for flag, item in filters:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise ConfigError(flag, item, "write COLUMN=VALUE (VALUE may be v1,v2), e.g. --at step=0")
        column = resolve(df, key, flag, exp)
        kept = _filter(sub, column, text, flag, item)
        if kept.empty:
            after = f" after {' '.join(applied)}" if applied else ""
            raise ConfigError(flag, item if flag == "--at" else layer,
                              f"this filter leaves no rows of {metric}{after}; {column} holds {_values(sub[column])}")
        applied.append(f"{flag} {item if flag == '--at' else layer}")
        sub = kept
    return sub


def _filter(df: pd.DataFrame, column: str, text: str, flag: str, item: str) -> pd.DataFrame:
    """Rows of ``df`` whose ``column`` is one of the comma-separated values ``text`` (or the first/last step, the
    deepest layer)."""
    if column == "step" and text in ("first", "last"):
        return stats.at_step(df, text)
    if column == "layer" and text == "last":
        return stats.last_layer(df.dropna(subset=["layer"]))
    series = df[column]
    tokens = text.split(",")
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        try:
            wanted = [float(t) for t in tokens]
        except ValueError:
            raise ConfigError(flag, item, f"{column} holds numbers ({_values(series)})") from None
        values = series.to_numpy(dtype=float)
        mask = np.zeros(len(df), dtype=bool)
        for w in wanted:
            mask |= np.isnan(values) if math.isnan(w) else values == w
    else:
        # as written, plus YAML's spellings of true/false/null (None too; "none" stays a name: norm=none)
        spelled = {*tokens, *(t.lower() for t in tokens if t.lower() in ("true", "false", "null"))}
        spelled |= {"null" for t in tokens if t == "None"}
        mask = series.map(_text).isin(spelled).to_numpy()
    return df[mask]


def one_row_per_seed(df: pd.DataFrame, keys: Sequence[str], option: str, metric: str, remedy: str) -> None:
    """Refuse a query whose points hold several rows of one seed (a mean over them would mix layers, steps or
    configurations silently), naming the columns in which those rows differ."""
    groups = df.groupby([*keys, "seed"], dropna=False)
    most = int(groups.size().max())
    if most <= 1:
        return
    candidates = [c for c in (*ROW_COLUMNS, *config_columns(df)) if c not in (*keys, "seed")]
    spread = groups[candidates].nunique(dropna=False).max()
    differ = [c for c in candidates if spread[c] > 1]
    shown = "; ".join(f"{c} ({_values(df[c], 6)})" for c in differ[:4]) or "nothing recorded"
    first = differ[0] if differ else "layer"
    raise ConfigError(option, metric, f"it has up to {most} rows per seed at one point, which differ in {shown}: "
                                      f"choose one with --at {first}=VALUE"
                                      + (" or --layer N|last" if first == "layer" else "") + f", or add it to {remedy}")


# --------------------------------------------------------------------------------------- table

def table(exp: str, by: Sequence[str], metric: str, *, layer: str | None = None, at: Sequence[str] = (),
          root: Path | None = None) -> pd.DataFrame:
    """Mean, 95% CI (``lo``, ``hi``) and seed count (``seeds``) of ``metric`` per group of the ``by`` columns."""
    if not by:
        raise ConfigError("--by", "", "name at least one column, e.g. --by model.depth,norm")
    df = load_sweep(exp, root)
    columns = [resolve(df, name, "--by", exp) for name in by]
    sub = select(df, exp, metric, "--metric", layer=layer, at=at)
    one_row_per_seed(sub, columns, "--metric", metric, "--by")
    out = stats.summarize(sub, columns[-1], columns[:-1])
    return out.rename(columns={"n": "seeds"})


def format_table(frame: pd.DataFrame) -> str:
    """An aligned text table: text columns to the left, numbers to the right; a float column with one number of
    decimals (three significant digits at its smallest value), or ``.4g`` where its values are very large or small."""
    cols = [(name, _cells(frame[name])) for name in frame.columns]
    lines = []
    for row in range(-1, len(frame)):
        parts = []
        for name, cells in cols:
            text = name if row < 0 else cells[row]
            width = max(len(name), *(len(c) for c in cells)) if cells else len(name)
            numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
            parts.append(text.rjust(width) if numeric else text.ljust(width))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cells(column: pd.Series) -> list[str]:
    if not pd.api.types.is_float_dtype(column) or column.isna().all():
        return [_text(v) for v in column]
    values = column.to_numpy(dtype=float)
    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    if finite.size and (finite.min() < 1e-4 or finite.max() >= 1e6):
        return [f"{v:.4g}" for v in values]
    least = finite.min() if finite.size else 1.0
    decimals = min(6, max(0, 2 - math.floor(math.log10(least))))  # three significant digits at its smallest
    if all(float(v).is_integer() for v in values[np.isfinite(values)]):
        decimals = 0  # layer indices, depths: whole numbers stay whole
    return [f"{v:.{decimals}f}" for v in values]


# --------------------------------------------------------------------------------------- plot

def plot(exp: str, x: str, y: str, *, hue: str | None = None, layer: str | None = None, at: Sequence[str] = (),
         logx: bool = False, logy: bool = False, name: str | None = None, root: Path | None = None) -> Path:
    """Mean of metric ``y`` against column ``x`` with its 95% CI band over seeds, one band per value of ``hue``;
    written to ``<root>/runs/<exp>/plots/<name>.{png,pdf,json}``. Returns the png's path."""
    root = results.outputs_root() if root is None else Path(root)
    df = load_sweep(exp, root)
    xcol = resolve(df, x, "--x", exp)
    hcol = resolve(df, hue, "--hue", exp) if hue else None
    sub = select(df, exp, y, "--y", layer=layer, at=at)
    one_row_per_seed(sub, [xcol, *([hcol] if hcol else [])], "--y", y, "--hue" if hcol else "--hue (or --x)")
    summary = stats.summarize(sub, xcol, [hcol] if hcol else [])
    categorical = not pd.api.types.is_numeric_dtype(sub[xcol]) or pd.api.types.is_bool_dtype(sub[xcol])
    if logx and categorical:
        raise ConfigError("--logx", x, f"{xcol} is not numeric ({_values(sub[xcol])})")
    if logx and (summary[xcol].astype(float) <= 0).any():
        raise ConfigError("--logx", x, f"{xcol} has values ≤ 0 ({_values(sub[xcol])})")

    ticks = sorted(summary[xcol].unique(), key=lambda v: _natural(_text(v)))
    summary["_x"] = summary[xcol].map({v: i for i, v in enumerate(ticks)}) if categorical else summary[xcol]
    fig, axes = style.new_figure(width=4.0, height=2.8)
    ax = axes[0]
    for look, part in _series(summary, hcol):
        style.band(ax, part, "_x", **look)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        lo, hi = ax.get_ylim()
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 16 and 0.1, not 1.6 × 10¹ and 1e-01
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if hi / lo <= 4 else NullFormatter())  # a narrow range has no decade
    if categorical or (logx and len(ticks) <= 12):  # label the swept values themselves, not decades
        ax.set_xticks([float(v) for v in (range(len(ticks)) if categorical else ticks)], [_text(v) for v in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xcol)
    ax.set_ylabel(y if layer is None else f"{y} (layer {layer})")
    ax.set_title(" · ".join([exp, *at]), loc="left")
    if hcol:  # outside the axes: a legend there never covers a curve
        ax.legend(title=hue, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)

    auto = "-".join([f"{y}-vs-{x}", *([f"by-{hue}"] if hue else []), *([f"layer{layer}"] if layer else []), *at])
    stem = root / "runs" / exp / "plots" / re.sub(r"[^A-Za-z0-9_=+-]", "_", name or auto)  # no dot: a suffix
    png, pdf = style.save(fig, stem)
    argv = ["bnexp", "plot", "--exp", exp, "--x", x, "--y", y, *(["--hue", hue] if hue else []),
            *(["--layer", str(layer)] if layer is not None else []), *(a for item in at for a in ("--at", item)),
            *(["--logx"] if logx else []), *(["--logy"] if logy else []), *(["--name", name] if name else [])]
    env = f"BNEXP_OUTPUTS={shlex.quote(str(root))} " if "BNEXP_OUTPUTS" in os.environ else ""
    record = {"command": env + shlex.join(argv), "outputs": str(root), "exp": exp, "x": xcol, "y": y, "hue": hcol,
              "layer": layer, "at": list(at), "logx": logx, "logy": logy, "files": [png.name, pdf.name],
              "runs": sorted(sub["run"].unique().tolist()),
              "points": json.loads(summary.drop(columns="_x").to_json(orient="records"))}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return png


def _series(summary: pd.DataFrame, hcol: str | None):
    """(look, rows) per band, labelled with the value as the command line writes it: the paper figures' look of
    a config group (``norm.name``, ``init.name``, ...) where every value has one and no two share it (bn_torch and
    bn_center are both the BN blue), else the numbered series styles in sorted order."""
    if hcol is None:
        yield style.series(0), summary
        return
    values = sorted(summary[hcol].unique(), key=lambda v: _natural(_text(v)))
    kind = hcol[:-5] if hcol.endswith(".name") else None
    looks = None
    if kind in style.STYLES and all(v in style.STYLES[kind] for v in values):
        looks = [style.of(kind, v) for v in values]
        if len({(k["color"], k["marker"], k["linestyle"]) for k in looks}) < len(looks):
            looks = None
    for i, value in enumerate(values):
        look = {"kind": kind, "name": value} if looks else {**style.series(i)}
        yield {**look, "label": _text(value)}, summary[summary[hcol] == value]

"""The one plot style of every figure: page look, and one colour, marker and line style per normalization,
initialization, activation and dataset, so a choice looks the same in every figure of every paper.

A figure never picks a colour itself: it asks ``style.of("norm", "bn_torch")`` (a dict for ``ax.plot``) or
passes ``kind``/``name`` to :func:`band`. Series without a name of their own (widths, depths, layers) take
``style.series(i)``. The palette is Okabe–Ito (distinguishable with the common colour-vision deficiencies);
the unnormalized network is always vermilion with crosses, batch normalization always a blue.

Every figure is also laid out one way when saved (:func:`save` → :func:`layout`), so that it passes the checks of
:mod:`bnexp.figures.legibility`: legends (made with :func:`legend`) moved off the data, inside or outside the axes;
titles and labels wrapped to their axes; colliding log-axis tick labels as plain numbers. Formulas are mathtext
(``$…$``, e.g. :data:`GRAD_W1`), text is at least 7 pt, and a table is a figure of its own at 8 pt (:func:`table`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.legend import Legend

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3, "lines.markersize": 3,
})

# Okabe–Ito
BLUE, VERMILION, GREEN, SKY, PURPLE, ORANGE, YELLOW, BLACK = (
    "#0072B2", "#D55E00", "#009E73", "#56B4E9", "#CC79A7", "#E69F00", "#F0E442", "#000000")
GREY = "0.5"  # reference lines (theory, bounds, d, √d)

# Quantities that recur across figures, in mathtext: every formula of a figure is set as mathtext ($…$), never as
# plain text with literal braces or underscores (bnexp.figures.legibility checks it)
GRAD_W1 = r"$\ln \|\nabla_{W_1} L\|_F$"
RANK_HALF = r"$\mathrm{rank}_{1/2}$"
SERIES = (BLUE, VERMILION, GREEN, PURPLE, ORANGE, SKY, BLACK)
MARKERS = ("o", "s", "^", "D", "v", "P", "*")


def _s(color: str, marker: str = "o", linestyle: str = "-", label: str | None = None) -> dict[str, Any]:
    return {"color": color, "marker": marker, "linestyle": linestyle, "label": label}


# One entry per config name (configs/norm, configs/init, configs/act, configs/data). The label is the default
# legend text; a figure may pass its own (e.g. the paper's wording) without changing the look.
STYLES: Mapping[str, Mapping[str, dict[str, Any]]] = {
    "norm": {
        "none": _s(VERMILION, "x", "-", "vanilla"),
        "bn_torch": _s(BLUE, "o", "-", "BN"),
        "bn_center": _s(BLUE, "o", "-", "BN"),
        "bn_theory": _s(SKY, "s", "-", "BN (no centring)"),
        "bn_nocenter": _s(PURPLE, "s", "--", "BN w/o centering"),
        "bn_unit": _s(GREEN, "^", "-", "BN (unit)"),
        "bn_detach_var": _s(ORANGE, "D", "-", "BN (variance detached)"),
        "bn_code_fig1": _s(BLUE, "o", "-", "BN"),
        "bn_code_fig6": _s(BLUE, "o", "-", "BN"),
        "layernorm": _s(GREEN, "v", "--", "LayerNorm"),
        "rmsnorm": _s(BLACK, "P", "--", "RMSNorm"),
        "groupnorm": _s(ORANGE, "*", "--", "GroupNorm"),
        "weightnorm": _s(PURPLE, "h", ":", "Weight norm"),
    },
    "init": {
        "orthogonal": _s(BLUE, "o", "-", "orthogonal"),
        "xavier_normal": _s(VERMILION, "s", "-", "Gaussian"),
        "xavier_uniform": _s(SKY, "D", "-", "uniform"),
        "std_gauss": _s(GREEN, "^", "-", "standard Gaussian"),
        "std_unif": _s(PURPLE, "v", "-", "standard uniform"),
        "torch_default": _s(BLACK, "o", "-", "torch default"),
        "asym": _s(ORANGE, "P", "-", "asymmetric"),
        "pretrained": _s(GREEN, "^", "--", "pre-trained"),
        "svd_orth": _s(VERMILION, "o", "-", "orthogonal (SVD init)"),
    },
    "act": {
        "linear": _s(BLUE, "o", "-", "identity"),
        "sin": _s(VERMILION, "s", "-", "sin"),
        "tanh": _s(GREEN, "^", "-", "tanh"),
        "relu": _s(PURPLE, "D", "-", "relu"),
        "sigmoid": _s(ORANGE, "v", "--", "logistic sigmoid"),
        "tanh_plus_one": _s(SKY, "P", "-", "tanh + 1"),
    },
    "data": {
        "cifar10": _s(BLUE, "o", "-", "CIFAR-10"),
        "mnist": _s(VERMILION, "s", "-", "MNIST"),
        "fashion_mnist": _s(GREEN, "^", "-", "Fashion-MNIST"),
        "cifar100": _s(PURPLE, "D", "-", "CIFAR-100"),
        "powerlaw": _s(ORANGE, "v", "-", "power-law"),
        "gaussian": _s(BLACK, "o", "-", "Gaussian"),
        "prototypes": _s(SKY, "P", "-", "prototypes"),
    },
}


def of(kind: str, name: str) -> dict[str, Any]:
    """Matplotlib keywords (color, marker, linestyle, label) of config ``name`` in group ``kind``."""
    if kind not in STYLES:
        raise KeyError(f"no style group {kind!r}; groups: {sorted(STYLES)}")
    if name not in STYLES[kind]:
        raise KeyError(f"no style for {kind}={name!r}; add it to STYLES in bnexp/figures/style.py "
                       f"(known: {sorted(STYLES[kind])})")
    return dict(STYLES[kind][name])


def series(i: int, label: str | None = None) -> dict[str, Any]:
    """The style of the ``i``-th unnamed series of a panel (widths, depths, layers, eigenvalues)."""
    return _s(SERIES[i % len(SERIES)], MARKERS[i % len(MARKERS)], "-", label)


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def band(ax: plt.Axes, summary: pd.DataFrame, x: str, *, kind: str | None = None, name: str | None = None,
         label: str | None = None, marker: str | None = None, color: str | None = None,
         linestyle: str | None = None, transform: Callable | None = None) -> None:
    """Mean line with markers and a shaded 95% CI band from a :func:`bnexp.figures.stats.summarize` table.

    The look comes from ``kind``/``name`` (see :func:`of`) unless given; ``label`` defaults to the style's.
    """
    look = of(kind, name) if kind is not None else _s(None, "o", "-", None)
    for key, value in (("label", label), ("marker", marker), ("color", color), ("linestyle", linestyle)):
        if value is not None:
            look[key] = value
    s = summary.sort_values(x)
    xs = s[x].to_numpy(dtype=float)
    mean, lo, hi = (s[c].to_numpy(dtype=float) for c in ("mean", "lo", "hi"))
    if transform is not None:
        mean, lo, hi = transform(mean), transform(lo), transform(hi)
    (line,) = ax.plot(xs, mean, **look)
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def bands(ax: plt.Axes, df: pd.DataFrame, x: str, by: str, label: Callable[[Any], str] = "{:g}".format,
          **look: Any) -> None:
    """One mean ± 95% CI band of ``value`` against column ``x`` per value of column ``by`` (in sorted order, the
    unnamed series styles): "``value`` against ``x`` by ``by``" for widths, depths, layers. ``look`` overrides
    the style of every band (e.g. ``marker="."``)."""
    from bnexp.figures.stats import summarize

    for i, value in enumerate(sorted(df[by].unique())):
        band(ax, summarize(df[df[by] == value], x), x, **{**series(i, label(value)), **look})


def reference(ax: plt.Axes, x, y, label: str, *, linestyle: str = "--") -> None:
    """A grey reference curve (a theory line, a bound, d or √d)."""
    ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), color=GREY, linestyle=linestyle, linewidth=1,
            label=label)


def single_panel(panel: Callable, claims: Callable, key: str, title: str):
    """(plot, claims) functions of a one-panel figure drawn by ``panel(ax, frames[key])``."""

    def plot(frames, scale):
        fig, axes = new_figure(width=3.8)
        panel(axes[0], frames[key])
        axes[0].set_title(f"{title} ({scale})")
        return fig

    def check(frames, scale):
        return claims(frames[key], scale)

    return plot, check


def legend(where: plt.Axes | plt.Figure, *args: Any, **kwargs: Any) -> Legend:
    """The legend of an axes (or a figure), in the legend font of every figure. Where an axes legend lands is
    decided when the figure is saved (:func:`layout`): where it was put (by default the spot matplotlib finds best)
    if that covers no data point and no text, else the first corner or edge that covers none, else the top of the
    axes with room made above the data (a legend of at most :data:`HEADROOM` of the axes' height), else outside
    the axes, to their right, the figure widened to hold it."""
    return where.legend(*args, **kwargs)


def table(table: pd.DataFrame, title: str, *, fontsize: float = 8.0) -> plt.Figure:
    """A figure that is only ``table`` (header row, then its rows as strings) under ``title``, at ``fontsize``
    points and sized to its text: each column as wide as its widest cell, no margin around it."""
    fig = plt.figure()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.axis("off")
    text = [list(map(str, table.columns)), *table.astype(str).to_numpy().tolist()]
    cells = ax.table(cellText=text[1:], colLabels=text[0], cellLoc="center", bbox=(0.0, 0.0, 1.0, 1.0))
    cells.auto_set_font_size(False)
    cells.set_fontsize(fontsize)
    renderer = fig.canvas.get_renderer()
    pad = fontsize * fig.dpi / 72.0  # one em on each side of the widest text of a column
    extent = {key: cell.get_text().get_window_extent(renderer) for key, cell in cells.get_celld().items()}
    widths = [max(extent[r, c].width for r in range(len(text))) + 2 * pad for c in range(len(text[0]))]
    heights = [max(extent[r, c].height for c in range(len(text[0]))) + pad for r in range(len(text))]
    for (r, c), cell in cells.get_celld().items():
        cell.set_width(widths[c])
        cell.set_height(heights[r])
        cell.PAD = pad / widths[c]
    fig.set_size_inches(sum(widths) / fig.dpi, sum(heights) / fig.dpi)
    ax.set_title(title, loc="left")
    return fig


def layout(fig: plt.Figure) -> None:
    """Final placement before saving: a tight layout of the subplots; titles and axis labels longer than their axes
    wrapped; labelled minor ticks of a log axis as plain numbers (and unlabelled where they still collide); each
    axes legend moved off the data (see :func:`legend`). Repeated while anything changes, since each change moves
    the rest."""
    from bnexp.figures import legibility

    subplots = all(ax.get_subplotspec() is not None for ax in fig.axes)
    for _ in range(6):
        if subplots:
            fig.tight_layout()
        renderer = legibility.drawn(fig)
        placed = {leg: _place(leg, fig, renderer, legibility) for leg in legibility.legends(fig) if leg.axes}
        _widen(fig, [leg for leg, move in placed.items() if move == "outside"], renderer)
        if any(placed.values()):
            continue  # the legends first: a legend moved outside changes the width of everything else
        changed = [wrap_labels(fig, renderer)]
        changed += [_declutter(axis, renderer, legibility) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
        if not any(changed):
            return
    if subplots:
        fig.tight_layout()


def _declutter(axis, renderer, legibility) -> bool:
    """A log axis spanning about a decade or less labels its minor ticks as 2×10⁰, 3×10⁰, …, long labels that
    collide in a narrow panel: plain numbers (2, 3, …) instead, and no minor labels where those still collide.
    Whether it changed the axis."""
    if axis.get_scale() != "log" or not axis.axes.axison:
        return False
    ticks = axis._update_ticks()
    labels = [t for tick in ticks for t in (tick.label1, tick.label2) if t.get_visible() and t.get_text()]
    minor_ticks = {id(tick) for tick in axis.minorTicks}
    minor = any(tick.label1.get_text() for tick in ticks if id(tick) in minor_ticks)
    if type(axis.get_major_formatter()) is ticker.LogFormatterSciNotation and minor:
        base = axis.get_transform().base
        axis.set_major_formatter(PlainLogFormatter(base=base, labelOnlyBase=False))
        axis.set_minor_formatter(PlainLogFormatter(base=base, labelOnlyBase=False))
        return True
    if legibility.overlaps(dict.fromkeys(labels, "tick label"), renderer, 0.0):
        axis.set_minor_formatter(ticker.NullFormatter())
        return True
    return False


class PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers (0.06, 2, 300), chosen as :class:`matplotlib.ticker.LogFormatter` does."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _place(leg: Legend, fig: plt.Figure, renderer, legibility) -> str | None:
    """Move ``leg`` off the data and the texts: to a corner or edge of its axes; else, when it takes at most
    :data:`HEADROOM` of the axes' height, to the top of axes whose y range grows to make room above the data;
    else outside the axes, to their right. Returns how it moved ("inside", "headroom", "outside") or None."""
    if getattr(leg, "_outside", False):
        return None
    ax = leg.axes
    others = [t for t in legibility.texts(fig) if t not in legibility.legend_texts(leg)]

    def clear() -> bool:
        box = leg.get_window_extent(renderer)
        return not legibility.covered_by(leg, fig, renderer) and not any(
            box.overlaps(t.get_window_extent(renderer)) for t in others)

    if clear():
        return None
    leg.set_bbox_to_anchor(None)
    for loc in LEGEND_SPOTS:
        leg.set_loc(loc)
        if clear():
            return "inside"
    share = leg.get_window_extent(renderer).height / ax.get_window_extent(renderer).height * 1.1
    if share <= HEADROOM:
        limits = ax.get_ylim()
        scale = ax.yaxis.get_transform()
        low, high = scale.transform(limits)
        ax.set_ylim(limits[0], scale.inverted().transform(high + (high - low) * share / (1 - share)))
        for loc in ("upper right", "upper left", "upper center"):
            leg.set_loc(loc)
            if clear():
                return "headroom"
        ax.set_ylim(limits)
    leg.set_loc("upper left")
    leg.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)
    leg._outside = True  # placed for good: the next passes only make room for it
    return "outside"


HEADROOM = 1 / 3  # the most of an axes' height that a legend may claim above the data


def _widen(fig: plt.Figure, outside: list[Legend], renderer) -> None:
    """Widen ``fig`` by the legends just moved outside their axes (the widest per subplot column), so the axes
    keep their width."""
    widths: dict[int, float] = {}
    for leg in outside:
        spec = leg.axes.get_subplotspec()
        column = spec.colspan.start if spec is not None else 0
        widths[column] = max(widths.get(column, 0.0), leg.get_window_extent(renderer).width / fig.dpi + 0.15)
    if widths:
        fig.set_size_inches(fig.get_figwidth() + sum(widths.values()), fig.get_figheight())


# where a legend may go inside its axes, in order of preference: corners, then edges
LEGEND_SPOTS = ("upper right", "upper left", "lower left", "lower right", "center right", "center left",
                "upper center", "lower center")


def wrap_labels(fig: plt.Figure, renderer) -> bool:
    """Break titles and axis labels wider than their axes into lines at spaces (never inside ``$…$``); whether
    any was."""
    changed = False
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        for text, room in ((ax.title, frame.width), (ax.xaxis.label, frame.width), (ax.yaxis.label, frame.height)):
            extent = text.get_window_extent(renderer)
            length = extent.height if text is ax.yaxis.label else extent.width
            if text.get_text() and text.get_visible() and length > room * 1.02:
                lines = text.get_text().count("\n") + 1
                wrapped = wrap(text.get_text(), int(len(text.get_text()) / lines * room / length))
                changed |= wrapped != text.get_text()
                text.set_text(wrapped)
    return changed


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters at spaces outside ``$…$``."""
    parts = re.split(r"(\$[^$]*\$)", text)
    guarded = "".join(p.replace(" ", "\x00") if p.startswith("$") else p for p in parts)
    return textwrap.fill(guarded, max(width, 10), break_long_words=False).replace("\x00", " ")


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` after the final :func:`layout`; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    layout(fig)
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths

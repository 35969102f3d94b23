"""The one plot style of every figure: page look, and one colour, marker and line style per normalization,
initialization, activation and dataset, so a choice looks the same in every figure of every paper.

A figure never picks a colour itself: it asks ``style.of("norm", "bn_torch")`` (a dict for ``ax.plot``) or
passes ``kind``/``name`` to :func:`band`. Series without a name of their own (widths, depths, layers) take
``style.series(i)``. The palette is Okabe–Ito (distinguishable with the common colour-vision deficiencies);
the unnormalized network is always vermilion with crosses, batch normalization always a blue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3, "lines.markersize": 3,
})

# Okabe–Ito
BLUE, VERMILION, GREEN, SKY, PURPLE, ORANGE, YELLOW, BLACK = (
    "#0072B2", "#D55E00", "#009E73", "#56B4E9", "#CC79A7", "#E69F00", "#F0E442", "#000000")
GREY = "0.5"  # reference lines (theory, bounds, d, √d)
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


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths

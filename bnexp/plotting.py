"""Shared plot style, seed aggregation (mean and 95% bootstrap CI) and slope fits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

N_BOOT = 1000  # bootstrap resamples for the 95% CI of a mean over seeds (as seaborn's default)
CI_SEED = 0  # the bootstrap is seeded so the same runs give the same plot

plt.rcParams.update({
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
    "legend.fontsize": 7, "axes.grid": True, "grid.alpha": 0.3, "lines.markersize": 3,
})


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = N_BOOT,
                 seed: int = CI_SEED) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean of ``values`` (non-finite values dropped).

    With one value the interval collapses to the value; with none everything is nan.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def summarize(df: pd.DataFrame, x: str, by: Sequence[str] = (), value: str = "value") -> pd.DataFrame:
    """One row per (``by``..., ``x``): ``mean``, ``lo``, ``hi`` (95% CI over the rows, i.e. seeds), ``n``."""
    keys = [*by, x]
    rows = []
    for group, sub in df.groupby(keys, sort=True, dropna=False):
        mean, lo, hi = bootstrap_ci(sub[value].to_numpy())
        rows.append((*(group if isinstance(group, tuple) else (group,)), mean, lo, hi, len(sub)))
    return pd.DataFrame(rows, columns=[*keys, "mean", "lo", "hi", "n"])


def band(ax: plt.Axes, summary: pd.DataFrame, x: str, *, label: str | None = None, marker: str = "o",
         color: str | None = None, linestyle: str = "-", transform=None) -> None:
    """Mean line with markers and a shaded 95% CI band from a :func:`summarize` table."""
    s = summary.sort_values(x)
    xs = s[x].to_numpy(dtype=float)
    mean, lo, hi = (s[c].to_numpy(dtype=float) for c in ("mean", "lo", "hi"))
    if transform is not None:
        mean, lo, hi = transform(mean), transform(lo), transform(hi)
    (line,) = ax.plot(xs, mean, marker=marker, linestyle=linestyle, color=color, label=label)
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)


def fit_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``y ≈ slope·x + intercept`` over the finite points; returns (slope, intercept)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return (np.nan, np.nan)
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    return (float(slope), float(intercept))


def loglog_slope(x: Sequence[float], y: Sequence[float], base: float = 2.0) -> float:
    """Slope of log y against log x (any base gives the same slope)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit_slope(np.log(np.asarray(x, dtype=float)) / np.log(base),
                         np.log(np.asarray(y, dtype=float)) / np.log(base))[0]


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths

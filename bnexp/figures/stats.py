"""The data side of every figure: what a plot asks of the loaded runs, never CSV columns by hand.

The frames a figure gets (``bnexp.results.load_runs``) are long rows ``(seed, step, layer, metric, value)`` joined
with each run's flattened config (``model.depth``, ``norm.name``, ...) and its ``run.json`` facts (``run.step_unit``,
``run.precision``, ...). Here: selection (:func:`pick`, :func:`last_layer`, :func:`at_step`), per-seed averages
(:func:`layer_average`, :func:`seed_mean`), the mean and 95% bootstrap CI over seeds (:func:`summarize`,
:func:`curve`: "mean ± CI of metric X against Y by Z"), slopes, and the x-axis unit of a training run
(:func:`step_label`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

INF = float("inf")
N_BOOT = 1000  # bootstrap resamples for the 95% CI of a mean over seeds (as seaborn's default)
CI_SEED = 0  # the bootstrap is seeded so the same runs give the same plot


def pick(df: pd.DataFrame, metric: str | None = None, **eq: Any) -> pd.DataFrame:
    """Rows of ``df`` with the given metric and config values (``chain__width=8`` means ``chain.width``)."""
    mask = np.ones(len(df), dtype=bool)
    if metric is not None:
        mask &= (df["metric"] == metric).to_numpy()
    for key, value in eq.items():
        column = key.replace("__", ".")
        mask &= (df[column] == value).to_numpy()
    return df[mask]


def layer_average(df: pd.DataFrame, metric: str, by: Sequence[str], min_step: int = 1) -> pd.DataFrame:
    """Per run and seed, the mean of ``metric`` over measured layers ``ℓ ≥ min_step`` (an ergodic average).

    Returns columns ``by + ["seed", "value"]``.
    """
    sub = pick(df, metric)
    sub = sub[sub["step"] >= min_step]
    return sub.groupby([*by, "seed"], as_index=False)["value"].mean()


def ratio_of_averages(df: pd.DataFrame, num: str, den: str, by: Sequence[str], min_step: int = 1) -> pd.DataFrame:
    """Per run and seed, mean(num)/mean(den) over layers (e.g. the regularity constant α, Eq. 49)."""
    n = layer_average(df, num, by, min_step).rename(columns={"value": "num"})
    d = layer_average(df, den, by, min_step).rename(columns={"value": "den"})
    out = n.merge(d, on=[*by, "seed"])
    out["value"] = out["num"] / out["den"]
    return out[[*by, "seed", "value"]]


def seed_mean(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean of ``value`` over seeds for each combination of ``by``."""
    return df.groupby(list(by), as_index=False)["value"].mean()


def mean_over_seeds(df: pd.DataFrame) -> float:
    """One number for a claim: the mean over seeds of each seed's mean ``value`` (nan when ``df`` is empty)."""
    if df.empty:
        return math.nan
    return float(df.groupby("seed")["value"].mean().mean())


def fmt_gamma(gamma: float) -> str:
    return "∞" if math.isinf(gamma) else f"{gamma:g}"


def monotone_increments(values: Sequence[float]) -> float:
    """The smallest consecutive difference (> 0 iff strictly increasing)."""
    v = np.asarray(values, dtype=float)
    return float(np.min(np.diff(v))) if v.size > 1 else math.nan


def last_layer(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's deepest measured layer (``probe.layers: last`` writes only that one)."""
    deepest = df.groupby("run")["layer"].transform("max")
    return df[df["layer"] == deepest]


def at_step(df: pd.DataFrame, which: str = "last") -> pd.DataFrame:
    """Rows at each run's first (``first``) or last (``last``) logged step."""
    steps = df.groupby("run")["step"].transform("min" if which == "first" else "max")
    return df[df["step"] == steps]


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


def curve(df: pd.DataFrame, metric: str | None, x: str, by: Sequence[str] = (), **eq: Any) -> pd.DataFrame:
    """Mean ± 95% CI over seeds of ``metric`` against column ``x`` for each ``by`` group, on the rows that
    :func:`pick` selects with ``eq`` — e.g. ``curve(df, "rank_torch", "model.depth", by=["norm.name"])``."""
    return summarize(pick(df, metric, **eq), x, by)


def fit_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``y ≈ slope·x + intercept`` over the finite points; returns (slope, intercept)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return (np.nan, np.nan)
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    return (float(slope), float(intercept))


def log_at_layer(df: pd.DataFrame, metric: str, layer: int, **eq: Any) -> pd.DataFrame:
    """Rows of ``metric`` at one ``layer`` with ``value`` replaced by its natural log, per run and seed (e.g.
    ln‖∂L/∂W_1‖_F from ``grad_norm`` at weight layer 1)."""
    sub = pick(df, metric, **eq)
    sub = sub[sub["layer"] == layer].copy()
    with np.errstate(divide="ignore"):
        sub["value"] = np.log(sub["value"].to_numpy(dtype=float))
    return sub


def profile(df: pd.DataFrame, x: str) -> pd.Series:
    """The seed mean of ``value`` per value of column ``x``, indexed by ``x`` (sorted): one curve."""
    return seed_mean(df, [x]).set_index(x)["value"].sort_index()


def profile_slope(curve: pd.Series) -> float:
    """Least-squares slope of a :func:`profile` against its index (e.g. per layer of depth)."""
    return fit_slope(curve.index.to_numpy(dtype=float), curve.to_numpy(dtype=float))[0]


def loglog_slope(x: Sequence[float], y: Sequence[float], base: float = 2.0) -> float:
    """Slope of log y against log x (any base gives the same slope)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return fit_slope(np.log(np.asarray(x, dtype=float)) / np.log(base),
                         np.log(np.asarray(y, dtype=float)) / np.log(base))[0]


def step_label(df: pd.DataFrame) -> str:
    """The x-axis label of a training curve: ``iteration`` when the runs logged every k optimiser steps
    (``optim.log_every``; ``run.json`` notes ``step_unit``), else ``epoch``. Runs that disagree raise."""
    units = set(df["run.step_unit"].dropna()) if "run.step_unit" in df.columns else set()
    if len(units) > 1:
        raise ValueError(f"runs mix step units {sorted(units)}; plot them on separate axes")
    return "iteration" if units == {"iteration"} else "epoch"

"""Small DataFrame helpers shared by the figure modules (selection and per-seed averages over layers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

INF = float("inf")


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


def single_panel(panel, claims, key: str, title: str):
    """(plot, claims) functions of a one-panel figure drawn by ``panel(ax, frames[key])``."""
    from bnexp import plotting

    def plot(frames, scale):
        fig, axes = plotting.new_figure(width=3.8)
        panel(axes[0], frames[key])
        axes[0].set_title(f"{title} ({scale})")
        return fig

    def check(frames, scale):
        return claims(frames[key], scale)

    return plot, check


def fmt_gamma(gamma: float) -> str:
    return "∞" if math.isinf(gamma) else f"{gamma:g}"


def monotone_increments(values: Sequence[float]) -> float:
    """The smallest consecutive difference (> 0 iff strictly increasing)."""
    v = np.asarray(values, dtype=float)
    return float(np.min(np.diff(v))) if v.size > 1 else math.nan

"""Weight spectra of a training run (``probe.spectra``): one ``.npz`` file per replicate and log point.

Layout, inside the run directory::

    spectra/seed_<seed>/step_<step>.npz     arrays layer_0, layer_1, …: the singular values (float64,
                                            descending) of weight matrix k of model.weight_layers()

so that any ε or normalisation of the weight rank (Frobenius or spectral) can be recomputed offline
(``bnexp.metrics.weights``). A non-finite matrix has an all-nan spectrum.

Consistency with ``metrics.csv``: a log point's file is written (atomically: a temporary file renamed over the
name) *before* its rows are appended, so every logged step has its file. A run that starts over removes the
folder (:func:`clear`); a run resumed from a checkpoint removes the files of log points after it (:func:`prune`),
which are then redone — the same files an uninterrupted run writes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["SPECTRA", "clear", "load_spectra", "prune", "spectra_path", "write_spectra"]

SPECTRA = "spectra"
_FILE = re.compile(r"step_(\d+)\.npz")
_SEED = re.compile(r"seed_(-?\d+)")


def spectra_path(directory: str | os.PathLike, seed: int, step: int) -> Path:
    return Path(directory) / SPECTRA / f"seed_{int(seed)}" / f"step_{int(step)}.npz"


def write_spectra(directory: str | os.PathLike, seed: int, step: int, spectra: Sequence[np.ndarray]) -> Path:
    """Write the singular values of every weight matrix (``spectra[k]``: layer k) of ``seed`` at ``step``."""
    path = spectra_path(directory, seed, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **{f"layer_{k}": np.asarray(s, dtype=np.float64) for k, s in enumerate(spectra)})
    os.replace(tmp, path)
    return path


def _files(directory: str | os.PathLike):
    """``(seed, step, path)`` of every spectra file under ``directory``."""
    root = Path(directory) / SPECTRA
    if not root.is_dir():
        return
    for seed_dir in root.iterdir():
        seed = _SEED.fullmatch(seed_dir.name)
        if seed is None or not seed_dir.is_dir():
            continue
        for path in seed_dir.iterdir():
            step = _FILE.fullmatch(path.name)
            if step is not None:
                yield int(seed.group(1)), int(step.group(1)), path


def load_spectra(directory: str | os.PathLike) -> dict[tuple[int, int], list[np.ndarray]]:
    """``{(seed, step): [σ(W_0), σ(W_1), …]}`` of a run directory, sorted by seed and step ({} without spectra)."""
    found = {}
    for seed, step, path in sorted(_files(directory)):
        with np.load(path) as arrays:
            found[(seed, step)] = [arrays[f"layer_{k}"] for k in range(len(arrays.files))]
    return found


def clear(directory: str | os.PathLike) -> None:
    """Remove every spectra file of the run (it starts over)."""
    shutil.rmtree(Path(directory) / SPECTRA, ignore_errors=True)


def prune(directory: str | os.PathLike, seed: int, step: int) -> None:
    """Remove the files written after the log point ``(seed, step)`` of a resumed run: later steps of ``seed``
    and every step of a later replicate (seeds run in increasing order)."""
    for s, t, path in list(_files(directory)):
        if s > seed or (s == seed and t > step):
            path.unlink(missing_ok=True)

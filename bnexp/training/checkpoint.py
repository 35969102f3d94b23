"""Training checkpoints: one ``checkpoint.pt`` per run directory, written atomically, read back on resume.

A checkpoint is a plain dict (``torch.save``): the trainer's state (model, optimiser, scheduler, the shuffle
generator, torch's global RNG states, epoch and iteration, the running sums since the last log point), where
the run is (replicate, learning-rate grid point), the grid-search state (rows held back per grid point, final
training losses) and ``csv_bytes``, the size of ``metrics.csv`` when it was written. Resuming truncates
``metrics.csv`` to that size — rows of work done after the checkpoint are dropped and redone — so a killed
and resumed run ends with the same file as an uninterrupted one (on the CPU, bit for bit).

Writes go to ``checkpoint.pt.tmp`` and are renamed over ``checkpoint.pt`` (``os.replace``), so a kill during a
write leaves the previous checkpoint intact. There is no fsync (it would stall every epoch on a large model);
after an operating-system crash a damaged checkpoint reads as None and the run starts over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bnexp.results import CHECKPOINT

__all__ = ["FILENAME", "FORMAT", "load", "path_in", "remove", "save"]

FILENAME = CHECKPOINT  # "checkpoint.pt": results.execute resumes a run directory that holds one
FORMAT = 1  # bump when the layout changes: an older checkpoint is then ignored (the run restarts)


def path_in(directory: str | os.PathLike) -> Path:
    return Path(directory) / FILENAME


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors on the CPU), or None if there is none, it is unreadable or of
    another format."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a truncated or foreign file means: start over
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    return state


def remove(path: str | os.PathLike) -> None:
    path = Path(path)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)

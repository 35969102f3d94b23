"""R replicates' tensors of one kind (parameters, or BN running statistics) as one ``(R, P)`` tensor.

Replicate r's tensors, flattened in the module's ``named_parameters()`` (``named_buffers()``) order, are row r
of ``flat``; tensor ``name`` is the column slice ``[start, stop)`` viewed as ``(R, *shape)``. One tensor per
kind means that the optimiser update, the divergence check and the masking of frozen replicates are a few
whole-tensor operations however many layers the model has, and that a replicate's slice is row r.

The views of a leaf that requires grad come from one ``split`` along the columns: autograd's backward of a
split is one ``cat``, so the gradient arrives as one ``(R, P)`` tensor in the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FlatLayout", "Slot"]


@dataclass(frozen=True)
class Slot:
    """Tensor ``name`` of shape ``shape`` in columns ``[start, stop)`` of each row."""

    name: str
    start: int
    stop: int
    shape: tuple[int, ...]


class FlatLayout:
    """Where each named tensor lives in a row of the ``(R, P)`` stack; built from the first replicate's tensors.

    ``stack(per_replicate)`` copies R dicts of same-shaped tensors into a new ``(R, P)`` tensor,
    ``views(flat)`` gives ``{name: (R, *shape) view}``, ``unstack(flat, r, into)`` copies row r back into a
    replicate's tensors.
    """

    def __init__(self, named: dict[str, Tensor]):
        self.slots: list[Slot] = []
        start = 0
        for name, t in named.items():
            self.slots.append(Slot(name, start, start + t.numel(), tuple(t.shape)))
            start += t.numel()
        self.width = start
        self.sizes = [s.stop - s.start for s in self.slots]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def check(self, named: dict[str, Tensor], which: str) -> None:
        """Raise ValueError unless ``named`` has this layout's names and shapes (replicates must share one
        architecture)."""
        got = [(n, tuple(t.shape)) for n, t in named.items()]
        want = [(s.name, s.shape) for s in self.slots]
        if got != want:
            raise ValueError(f"stacked replicates must share one architecture: replicate {which} has "
                             f"{got[:3]}… where the first has {want[:3]}…")

    def stack(self, per_replicate: Sequence[dict[str, Tensor]], dtype: torch.dtype,
              device: torch.device) -> Tensor:
        flat = torch.empty(len(per_replicate), self.width, dtype=dtype, device=device)
        for r, named in enumerate(per_replicate):
            for s in self.slots:
                flat[r, s.start:s.stop].copy_(named[s.name].detach().reshape(-1))
        return flat

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """``{name: flat[:, start:stop].view(R, *shape)}`` through one ``split`` (one ``cat`` in backward)."""
        if not self.slots:
            return {}
        R = flat.shape[0]
        return {s.name: part.view(R, *s.shape) for s, part in zip(self.slots, flat.split(self.sizes, dim=1))}

    def unstack(self, flat: Tensor, r: int, into: dict[str, Tensor]) -> None:
        """Copy row r of ``flat`` into the tensors ``into`` (a replicate's parameters or buffers), in place."""
        with torch.no_grad():
            for s in self.slots:
                into[s.name].copy_(flat[r, s.start:s.stop].view(s.shape))

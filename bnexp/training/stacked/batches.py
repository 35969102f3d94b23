"""Minibatch index streams of R replicates, one generator each, stacked per step into ``(R, b)``.

Replicate r's indices are exactly those :func:`bnexp.training.optim.epoch_batches` draws from its generator
(``shuffle``: one ``torch.randperm(n)`` per epoch cut into chunks of B, the last chunk partial unless
``drop_last``; ``replacement``: ``steps`` rows of B i.i.d. indices), so a replicate sees the same minibatches
stacked as alone. All replicates share n and B, so step k's chunks have one size and stack. One host → device
transfer per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bnexp import data

__all__ = ["StackedBatches", "shuffle_generators"]


def shuffle_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """The per-replicate minibatch generators of the per-run trainer (``Trainer.shuffle``): a CPU generator
    seeded with each seed's ``shuffle`` stream."""
    return [torch.Generator().manual_seed(data.derive_seed(int(s), "shuffle")) for s in seeds]


class StackedBatches:
    """``epoch()``: the next epoch's minibatch indices, a list of ``(R, b)`` tensors on ``device``."""

    def __init__(self, n: int, batch_size: int, generators: Sequence[torch.Generator],
                 device: torch.device | str = "cpu", sampling: str = "shuffle", steps: int | None = None,
                 drop_last: bool = False):
        if sampling not in ("shuffle", "replacement"):
            raise ValueError(f"sampling must be shuffle or replacement, got {sampling}")
        self.n, self.batch_size, self.generators = int(n), int(batch_size), list(generators)
        self.device, self.sampling, self.drop_last = device, sampling, bool(drop_last)
        self.steps = int(steps) if steps is not None else max(1, self.n // self.batch_size)

    def epoch(self) -> list[Tensor]:
        if self.sampling == "replacement":
            rows = torch.stack([torch.randint(0, self.n, (self.steps, self.batch_size), generator=g)
                                for g in self.generators], 1)  # (steps, R, B)
            return list(rows.to(self.device).unbind(0))
        order = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        return list(order[:, :stop].split(self.batch_size, dim=1))

    def state(self) -> list[Tensor]:
        return [g.get_state() for g in self.generators]

    def set_state(self, states: Sequence[Tensor]) -> None:
        for g, s in zip(self.generators, states):
            g.set_state(s)

"""Datasets as device-resident tensors, the fixed probe batch, and shuffled minibatch indices.

A dataset is four tensors ``(x_train, y_train, x_test, y_test)``: inputs ``(n, *shape)`` in the requested
float dtype, labels ``(n,)`` int64, all on the training device (the whole set is resident there, so an
epoch is index arithmetic on the device, no DataLoader).

``DATASETS`` maps ``data.name`` to a :class:`Source`: a ``check(cfg)`` that validates the dataset's own
keys before any work, and a ``build(cfg, seed) -> Split`` that makes the tensors on the CPU (so the same
seed gives the same numbers on every device). Later sources (torchvision Fashion-MNIST / MNIST /
CIFAR-10/100 read from ``data.root``, a Gaussian-mixture "prototype" set, uniform random images) are more
entries in that registry.

| name       | inputs                   | labels                                                            |
|------------|--------------------------|-------------------------------------------------------------------|
| gaussian   | X_ij ~ N(0, 1), dim d_in | argmax_c (X T)_c, teacher T (d_in × C) with unit-norm Gaussian     |
|            |                          | columns, so every class is equally likely and the task is linear  |

Seeds: :func:`derive_seed` splits a replicate's seed into independent streams (data, shuffling, model
construction), so that e.g. the input batch and the first weight matrix never share random bits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from bnexp.errors import ConfigError, check_int

__all__ = ["DATASETS", "STREAMS", "Source", "derive_seed", "make_dataset", "minibatches", "probe_batch"]

Split = tuple[Tensor, Tensor, Tensor, Tensor]  # x_train (n, ...), y_train (n,), x_test, y_test

# Named random streams of one replicate; the weights themselves are drawn from the replicate seed.
STREAMS = {"data": 1, "shuffle": 2, "model": 3}


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed for the named stream (``STREAMS``) of replicate ``seed``."""
    state = np.random.SeedSequence([int(seed), STREAMS[stream]]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def _check_int(cfg: DictConfig, key: str, minimum: int) -> None:
    check_int(f"data.{key}", cfg.get(key), minimum)


# ------------------------------------------------------------------------------------------------ sources


def _check_gaussian(cfg: DictConfig) -> None:
    for key, minimum in (("dim", 1), ("n_classes", 2), ("n_train", 1), ("n_test", 1)):
        _check_int(cfg, key, minimum)


def _gaussian(cfg: DictConfig, seed: int) -> Split:
    """X ~ N(0, 1)^{n × dim}; y = argmax(X T) with T's columns unit-norm Gaussian (a linear teacher)."""
    g = torch.Generator().manual_seed(derive_seed(seed, "data"))
    teacher = torch.randn(cfg.dim, cfg.n_classes, generator=g, dtype=torch.float64)
    teacher /= teacher.norm(dim=0)  # equal norms: classes equally likely under isotropic X
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.dim, generator=g, dtype=torch.float64)
    y = (x @ teacher).argmax(1)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


@dataclass(frozen=True)
class Source:
    """One dataset: ``check(cfg)`` validates its keys; ``build(cfg, seed)`` returns CPU tensors."""

    check: Callable[[DictConfig], None]
    build: Callable[[DictConfig, int], Split]


# Config ``data.name`` → source.
DATASETS: dict[str, Source] = {
    "gaussian": Source(_check_gaussian, _gaussian),
}


# ------------------------------------------------------------------------------------------------ API


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for an unknown ``data.name`` or an impossible ``data.*`` value."""
    if cfg.get("name") not in DATASETS:
        raise ConfigError("data.name", cfg.get("name"), DATASETS)
    DATASETS[cfg.name].check(cfg)
    _check_int(cfg, "batch_size", 1)
    if cfg.get("n_train") is not None and cfg.batch_size > cfg.n_train:
        raise ConfigError("data.batch_size", cfg.batch_size, f"must be <= data.n_train = {cfg.n_train} "
                          "(the probe batch is the first batch_size training samples)")
    if cfg.get("seed") is not None:
        _check_int(cfg, "seed", 0)


def make_dataset(
    cfg: DictConfig, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Split:
    """``(x_train, y_train, x_test, y_test)`` of dataset ``cfg.name`` on ``device``; inputs in ``dtype``.

    ``seed`` is the replicate's seed; ``data.seed`` (when not null) overrides it so that every replicate
    sees the same data (the depth paper reuses one input batch for all its runs).
    """
    validate(cfg)
    data_seed = seed if cfg.get("seed") is None else int(cfg.seed)
    x_train, y_train, x_test, y_test = DATASETS[cfg.name].build(cfg, data_seed)
    return (x_train.to(device=device, dtype=dtype), y_train.to(device=device, dtype=torch.long),
            x_test.to(device=device, dtype=dtype), y_test.to(device=device, dtype=torch.long))


def probe_batch(x_train: Tensor, y_train: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """The measurement batch: the first ``batch_size`` training samples, fixed for the whole run."""
    if batch_size > len(x_train):
        raise ConfigError("data.batch_size", batch_size, f"must be <= the {len(x_train)} training samples")
    return x_train[:batch_size], y_train[:batch_size]


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu",
                *, drop_last: bool = False) -> Iterator[Tensor]:
    """Index tensors of one epoch: a permutation of ``range(n)`` drawn from ``generator`` (CPU, so the
    order is the same on every device), cut into chunks of ``batch_size``; the last one may be partial
    unless ``drop_last``."""
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        if drop_last and start + batch_size > n:
            return
        yield order[start : start + batch_size]

"""What every data source shares: the split type, the seed streams, the :class:`Source` record, key checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig
from torch import Tensor

from bnexp.errors import ConfigError, check_int, check_number

Split = tuple[Tensor, Tensor, Tensor, Tensor]  # x_train (n, ...), y_train (n,), x_test, y_test

# Named random streams of one replicate; the weights themselves are drawn from the replicate seed.
# ``pretrain``: the minibatch order of rank-maximising pre-training (bnexp.training.pretrain).
STREAMS = {"data": 1, "shuffle": 2, "model": 3, "pretrain": 4}


def derive_seed(seed: int, stream: str, *child: int) -> int:
    """An independent 63-bit seed for the named stream (``STREAMS``) of replicate ``seed`` (``child``: a
    sub-stream of it, e.g. the trainer's global generator under ``shuffle``)."""
    state = np.random.SeedSequence([int(seed), STREAMS[stream], *child]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


@dataclass(frozen=True)
class Source:
    """One dataset: ``check(cfg)`` validates its keys; ``build(cfg, seed) -> Split`` makes CPU tensors.

    ``stats`` is the per-channel (mean, std) that ``data.normalize: dataset`` applies (None: the source has
    none, and only ``none`` or an explicit pair are valid); ``locate(cfg)``, when given, raises before any
    work if the source's files are missing and cannot be downloaded.
    """

    check: Callable[[DictConfig], None]
    build: Callable[[DictConfig, int], Split]
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    locate: Callable[[DictConfig], object] | None = None


def check_int_key(cfg: DictConfig, key: str, minimum: int) -> int:
    return check_int(f"data.{key}", cfg.get(key), minimum)


def check_optional_int(cfg: DictConfig, key: str, minimum: int) -> int | None:
    """``data.<key>``: null or an integer ≥ ``minimum``."""
    return None if cfg.get(key) is None else check_int_key(cfg, key, minimum)


def check_shape(cfg: DictConfig, key: str = "shape") -> tuple[int, ...]:
    """``data.shape``: a non-empty list of positive integers, e.g. [3, 16, 16] (C, H, W) or [784]."""
    value = cfg.get(key)
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ConfigError(f"data.{key}", value, "must be a non-empty list of positive integers, e.g. [3, 16, 16]")
    return tuple(check_int(f"data.{key}", v, 1) for v in value)


def check_float_key(cfg: DictConfig, key: str, lo: float = -float("inf"), hi: float = float("inf"), *,
                    open_lo: bool = False) -> float:
    return check_number(f"data.{key}", cfg.get(key), lo, hi, open_lo=open_lo)

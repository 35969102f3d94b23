"""Datasets as device-resident tensors, the fixed probe batch, and shuffled minibatch indices.

A dataset is four tensors ``(x_train, y_train, x_test, y_test)``: inputs ``(n, *shape)`` in the requested
float dtype (images keep their (C, H, W) shape; models flatten as needed), labels ``(n,)`` int64, all on the
training device (the whole set is resident there, so an epoch is index arithmetic on the device, no
DataLoader).

``DATASETS`` maps ``data.name`` to a :class:`Source`: a ``check(cfg)`` that validates the dataset's own
keys before any work, and a ``build(cfg, seed) -> Split`` that makes the tensors on the CPU (so the same
seed gives the same numbers on every device).

* synthetic (:mod:`bnexp.data.synthetic`): ``gaussian`` (linear-teacher labels), ``near_identity`` (the depth
  paper's Fig 1 input), ``shifted_gaussian`` (offset + N(0, I) images), ``powerlaw`` (image-like inputs with
  a power-law spectrum), ``prototypes`` (noisy sparse class prototypes, the rank paper's quick-scale
  classification task), ``mixture`` (a Gaussian mixture of class means plus an offset, the ortho paper's
  quick-scale training task), ``teacher`` (N(0, I) inputs labelled by a random one-hidden-layer tanh net, the
  depth paper's quick-scale training task), ``uniform_images`` (i.i.d. U[0, 255] images, the rank paper's
  "random data");
* real (:mod:`bnexp.data.vision`, torchvision's on-disk formats under ``data.root``): ``mnist``,
  ``fashion_mnist``, ``cifar10``, ``cifar100``.

Keys every source shares: ``batch_size`` (N: minibatch and probe batch), ``seed`` (null: each replicate's
own data; an int: the same data for all), ``distinct`` (null, or k: the probe batch is k distinct samples
each repeated batch_size/k times, a degenerate batch), ``normalize`` (``none``; ``dataset``: the source's
per-channel (mean, std), the depth paper's constants for the real datasets; or an explicit [mean, std]
pair of numbers or per-channel lists, applied as (x − mean)/std per channel like torchvision's Normalize).

Seeds: :func:`derive_seed` splits a replicate's seed into independent streams (data, shuffling, model
construction), so that e.g. the input batch and the first weight matrix never share random bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import torch
from omegaconf import DictConfig
from torch import Tensor

from bnexp.data import synthetic, vision
from bnexp.data.base import STREAMS, Source, Split, check_int_key, check_optional_int, derive_seed
from bnexp.errors import ConfigError, check_int, choose

__all__ = ["DATASETS", "STREAMS", "Source", "derive_seed", "make_dataset", "normalization",
           "probe_batch", "repeat_samples", "validate"]

# Config ``data.name`` → source.
DATASETS: dict[str, Source] = {
    "gaussian": Source(synthetic.check_gaussian, synthetic.gaussian),
    "near_identity": Source(synthetic.check_near_identity, synthetic.near_identity),
    "shifted_gaussian": Source(synthetic.check_shifted_gaussian, synthetic.shifted_gaussian),
    "powerlaw": Source(synthetic.check_powerlaw, synthetic.powerlaw),
    "prototypes": Source(synthetic.check_prototypes, synthetic.prototypes),
    "mixture": Source(synthetic.check_mixture, synthetic.mixture),
    "teacher": Source(synthetic.check_teacher, synthetic.teacher),
    "uniform_images": Source(synthetic.check_uniform_images, synthetic.uniform_images),
    **vision.SOURCES,
}


# ------------------------------------------------------------------------------------------------ API


def normalization(cfg: DictConfig) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``data.normalize`` as per-channel (mean, std), or None for ``none``; :class:`ConfigError` otherwise."""
    value = cfg.get("normalize", "none")
    if value is None or value == "none":
        return None
    if value == "dataset":
        stats = DATASETS[cfg.name].stats
        if stats is None:
            raise ConfigError("data.normalize", value, f"{cfg.name} has no dataset statistics; use none or an "
                              "explicit [mean, std] pair")
        return stats
    rule = "dataset, none, or a [mean, std] pair of numbers (or of per-channel lists), std > 0"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError("data.normalize", value, rule)
    pair = []
    for part in value:
        items = list(part) if isinstance(part, Sequence) and not isinstance(part, str) else [part]
        if not items or not all(isinstance(v, Real) and not isinstance(v, bool) for v in items):
            raise ConfigError("data.normalize", value, rule)
        pair.append(tuple(float(v) for v in items))
    mean, std = pair
    if min(std) <= 0 or len(mean) != len(std):
        raise ConfigError("data.normalize", value, rule + ", mean and std of the same length")
    return mean, std


def _normalize(x: Tensor, stats: tuple[tuple[float, ...], tuple[float, ...]] | None) -> Tensor:
    """(x − mean_c) / std_c over the channel axis 1 (one value broadcasts to every channel)."""
    if stats is None:
        return x
    mean, std = (torch.tensor(v, dtype=x.dtype) for v in stats)
    if len(mean) > 1:
        if x.dim() < 2 or x.shape[1] != len(mean):
            raise ConfigError("data.normalize", [list(v) for v in stats], f"has {len(mean)} channels but the inputs "
                              f"have shape {tuple(x.shape[1:])}")
        shape = (1, len(mean)) + (1,) * (x.dim() - 2)
        mean, std = mean.reshape(shape), std.reshape(shape)
    return (x - mean) / std


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for an unknown ``data.name`` or an impossible ``data.*`` value, and (real
    datasets) for files that are missing where no download will be tried."""
    choose("data.name", cfg.get("name"), DATASETS)
    source = DATASETS[cfg.name]
    source.check(cfg)
    batch = check_int_key(cfg, "batch_size", 1)
    distinct = check_optional_int(cfg, "distinct", 1)
    if distinct is not None and batch % distinct:
        raise ConfigError("data.distinct", distinct, f"must divide data.batch_size = {batch} (the probe batch is "
                          "data.distinct distinct samples, each repeated batch_size/distinct times)")
    n_train = cfg.get("n_train")
    if n_train is not None and distinct is None and batch > n_train:
        raise ConfigError("data.batch_size", batch, f"must be <= data.n_train = {n_train} "
                          "(the probe batch is the first batch_size training samples)")
    if n_train is not None and distinct is not None and distinct > n_train:
        raise ConfigError("data.distinct", distinct, f"must be <= data.n_train = {n_train}")
    if cfg.get("seed") is not None:
        check_int_key(cfg, "seed", 0)
    normalization(cfg)
    if source.locate is not None:
        source.locate(cfg)


def make_dataset(
    cfg: DictConfig, seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Split:
    """``(x_train, y_train, x_test, y_test)`` of dataset ``cfg.name`` on ``device``; inputs in ``dtype``.

    ``seed`` is the replicate's seed; ``data.seed`` (when not null) overrides it so that every replicate
    sees the same data (the depth paper reuses one input batch for all its runs). ``data.normalize`` is
    applied on the CPU in the source's own precision (float32 pixels for the real datasets, as torchvision's
    ToTensor and Normalize), before the cast to ``dtype``.
    """
    validate(cfg)
    data_seed = seed if cfg.get("seed") is None else int(cfg.seed)
    x_train, y_train, x_test, y_test = DATASETS[cfg.name].build(cfg, data_seed)
    stats = normalization(cfg)
    x_train, x_test = _normalize(x_train, stats), _normalize(x_test, stats)
    return (x_train.to(device=device, dtype=dtype), y_train.to(device=device, dtype=torch.long),
            x_test.to(device=device, dtype=dtype), y_test.to(device=device, dtype=torch.long))


def repeat_samples(x: Tensor, copies: int, dim: int = 0) -> Tensor:
    """Each sample along ``dim`` repeated ``copies`` times in a row: (x₁, x₁, …, x₂, x₂, …)."""
    return x if copies == 1 else x.repeat_interleave(copies, dim=dim)


def probe_batch(x_train: Tensor, y_train: Tensor, batch_size: int,
                distinct: int | None = None) -> tuple[Tensor, Tensor]:
    """The measurement batch, fixed for the whole run: the first ``batch_size`` training samples, or with
    ``distinct = k`` the first k training samples each repeated ``batch_size / k`` times (a degenerate batch of
    rank ≤ k, the depth paper's "repeated samples")."""
    check_int("data.batch_size", batch_size, 1)
    k = batch_size if distinct is None else check_int("data.distinct", distinct, 1)
    if batch_size % k:
        raise ConfigError("data.distinct", distinct, f"must divide data.batch_size = {batch_size}")
    if k > len(x_train):
        key, value = ("data.batch_size", batch_size) if distinct is None else ("data.distinct", distinct)
        raise ConfigError(key, value, f"must be <= the {len(x_train)} training samples")
    return repeat_samples(x_train[:k], batch_size // k), repeat_samples(y_train[:k], batch_size // k)

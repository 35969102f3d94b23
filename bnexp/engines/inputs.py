"""The input-batch engine (``bnexp inputs``): statistics of input batches themselves, no network.

For each replicate r (seed = cfg.seed + r) it builds the dataset (``data.make_dataset``), then draws
``batches`` batches of N = ``data.batch_size`` training samples, each without replacement (a fresh random
subset per batch, from the ``shuffle`` stream of the seed), flattens every sample, and writes one row
``(seed, step = batch index, layer = empty, metric, value)`` per metric in ``metrics`` (any name of
``bnexp.metrics.MEASURES``: e.g. ``rank_gram_float32``, the depth paper's float32 Gram rank; ``rank_np``, the
float64 rank of the batch itself; ``mean_cosine``). With ``data.distinct = k`` each batch is k distinct samples,
each repeated N/k times (a degenerate batch).

The inputs are in ``dtype`` (float32 by default: ToTensor's precision, the pixels the papers' code sees);
every metric computes in its own precision. Runs on ``runtime.device`` (``auto``: the CPU) with
``runtime.threads`` torch threads (``auto``: one; batched SVDs of a few hundred rows run ~10-40× slower on
two threads than on one on a 2-core CPU).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bnexp import data, metrics, runtime
from bnexp.errors import ConfigError, check_int, choose
from bnexp.runtime import DTYPES, resolve_device

__all__ = ["draw_batches", "run", "validate"]

CHUNK_ELEMENTS = 1 << 23  # batches measured together: at most this many input entries (64 MiB in float64)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key of the first impossible value, before any work."""
    data.validate(cfg.data)
    check_int("batches", cfg.get("batches"), 1)
    names = cfg.get("metrics")
    if not names:
        raise ConfigError("metrics", names, f"must list at least one of: {', '.join(sorted(metrics.MEASURES))}")
    for name in names:
        choose("metrics", name, metrics.MEASURES)
    choose("dtype", cfg.get("dtype"), DTYPES)
    runtime.validate(cfg, prefer_cuda=False)
    n_train = cfg.data.get("n_train")
    if n_train is not None and cfg.data.batch_size > n_train:
        raise ConfigError("data.batch_size", cfg.data.batch_size, f"must be <= data.n_train = {n_train} "
                          "(a batch is drawn without replacement)")


def draw_batches(n_total: int, batch_size: int, count: int, generator: torch.Generator,
                 distinct: int | None = None) -> torch.Tensor:
    """(count, batch_size) sample indices: each row a subset of ``range(n_total)`` drawn without replacement
    (k = ``distinct`` indices each repeated batch_size/k times when set)."""
    k = batch_size if distinct is None else distinct
    if k > n_total:
        raise ConfigError("data.batch_size" if distinct is None else "data.distinct", k,
                          f"must be <= the {n_total} training samples (batches are drawn without replacement)")
    rows = torch.stack([torch.randperm(n_total, generator=generator)[:k] for _ in range(count)])
    return data.repeat_samples(rows, batch_size // k, dim=1)


def run(cfg: DictConfig, writer) -> None:
    """Validate ``cfg``, then measure ``batches`` input batches per replicate, appending rows to ``writer``."""
    validate(cfg)
    device = resolve_device(cfg.runtime.device, prefer_cuda=False)
    dtype = DTYPES[cfg.dtype]
    threads = runtime.check_threads(cfg.runtime.threads)
    threads = 1 if threads == "auto" else threads
    writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _measure(cfg, device, dtype, writer)
    finally:
        torch.set_num_threads(previous)


def _measure(cfg: DictConfig, device: torch.device, dtype: torch.dtype, writer) -> None:
    names = list(cfg.metrics)
    batch, count, distinct = int(cfg.data.batch_size), int(cfg.batches), cfg.data.get("distinct")
    with tqdm(total=cfg.n_seeds * count, desc=str(cfg.exp_name), disable=not cfg.runtime.progress,
              leave=False) as bar:
        for r in range(cfg.n_seeds):
            seed = cfg.seed + r
            x_train, *_ = data.make_dataset(cfg.data, seed, "cpu", dtype)
            x_train = x_train.flatten(1)  # (n, d_in)
            generator = torch.Generator().manual_seed(data.derive_seed(seed, "shuffle"))
            indices = draw_batches(len(x_train), batch, count, generator, distinct)
            chunk = max(1, CHUNK_ELEMENTS // (batch * x_train.shape[1]))
            for start in range(0, count, chunk):
                xb = x_train[indices[start : start + chunk]].to(device)  # (c, N, d_in)
                values = metrics.measure(xb, names)
                rows = []
                for name, value in values.items():
                    for i, v in enumerate(value.tolist()):
                        rows.append((seed, start + i, None, name, v))
                writer.append(rows)
                bar.update(len(xb))

"""Optimisers, learning-rate schedules and minibatch sampling of ``bnexp train`` (the ``optim`` config section).

* ``optim.name``: ``sgd`` (``torch.optim.SGD``: ``lr``, ``momentum``, ``weight_decay``, nesterov off) or
  ``adam`` (``torch.optim.Adam``: ``lr``, ``betas``, ``eps``, ``weight_decay`` as an L2 term, not AdamW).
* ``optim.loss``: ``ce`` (``F.cross_entropy``, mean over the batch; default) or ``mse`` (the low-rank paper's
  ``F.mse_loss(logits, one_hot(y).float())``, mean over batch × classes): :func:`loss_of`, used by the training
  steps and the ``*_loss`` rows of the set passes.
* ``optim.wd_convention``: ``torch`` (default: ``weight_decay = λ`` adds λW to the gradient, the objective
  with (λ/2)‖W‖²) or ``paper`` (the low-rank paper's Eq. 2, λ‖W‖², gradient 2λW: ``weight_decay = 2λ``).
  ``optim.wd_on``: ``all`` (default: every parameter) or ``weights_only`` (only parameters with ≥ 2 dims —
  weight matrices and kernels — are decayed; biases and norm γ, β are not). Both are read with defaults, so
  configs without them compose to the same run keys as before.
* ``optim.schedule``: the learning rate after t optimiser steps (t = 0 for the first step) is
  ``lr · factor(t)`` with

  - ``constant``: factor 1;
  - ``cosine``: ½(1 + cos(π t / T)), T the run's total number of steps (epochs × steps per epoch): from lr at
    the first step down towards 0 at the last, over the whole run (``CosineAnnealingLR`` with T_max = T,
    eta_min = 0, stepped every iteration);
  - ``step``: γ^k with k = #{m ∈ ``optim.milestones`` : m · S ≤ t}, S the steps per epoch: the rate drops by
    ``optim.gamma`` after epoch m has finished, exactly as ``MultiStepLR`` stepped once per epoch.

  The schedule is stepped every iteration (``torch.optim.lr_scheduler.LambdaLR`` over steps), so ``cosine``
  is smooth within an epoch and ``step`` is piecewise constant on epochs; the scheduler's state is part of
  a checkpoint.
* ``data.sampling``: ``shuffle`` (each epoch a fresh permutation of the training set, cut into minibatches;
  the last one partial unless ``data.drop_last``) or ``replacement`` (every minibatch ``batch_size`` indices
  drawn i.i.d. uniformly with replacement, as the rank paper's Fig 1 code ``random_(0, n)``; an "epoch" is
  then ``optim.steps_per_epoch`` steps, default n_train // batch_size). Indices come from a CPU generator
  (same order on every device) and are generated for a whole epoch at once, then moved to the device in one
  transfer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int, check_number, choose
from bnexp.probe.gradients import sample_losses

__all__ = ["LOSSES", "OPTIMIZERS", "SAMPLINGS", "SCHEDULES", "WD_CONVENTIONS", "WD_ON", "LRFactor", "OptimSpec",
           "epoch_batches", "loss_of", "make_optimizer", "make_scheduler"]

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("ce", "mse")
WD_CONVENTIONS = ("torch", "paper")
WD_ON = ("all", "weights_only")
SCHEDULES = ("constant", "cosine", "step")
SAMPLINGS = ("shuffle", "replacement")


def _as_list(value) -> list | None:
    if isinstance(value, ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


@dataclass(frozen=True)
class OptimSpec:
    """The validated ``optim`` section (plus ``data.sampling``)."""

    name: str = "sgd"
    epochs: int = 0
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    lr_grid: tuple[float, ...] | None = None
    log_every: int | None = None
    steps_per_epoch: int | None = None
    sampling: str = "shuffle"
    loss: str = "ce"
    wd_convention: str = "torch"
    wd_on: str = "all"
    stop_below_acc: float | None = None  # early stop: training accuracy ≤ this ...
    stop_patience: int = 3  # ... at this many consecutive log points ...
    stop_after: int = 100  # ... after this epoch (the low-rank code's rule; off by default)

    @classmethod
    def from_cfg(cls, optim: DictConfig, data_cfg: DictConfig | None = None) -> OptimSpec:
        """Validate ``optim.*`` (and ``data.sampling``); raise :class:`ConfigError` naming the first bad key."""
        name = choose("optim.name", optim.get("name"), OPTIMIZERS)
        epochs = check_int("optim.epochs", optim.get("epochs"), 0)
        lr = check_number("optim.lr", optim.get("lr"), 0.0, open_lo=True)
        momentum = 0.0
        if name == "sgd":
            momentum = check_number("optim.momentum", optim.get("momentum", 0.0), 0.0, 1.0, open_hi=True)
        weight_decay = check_number("optim.weight_decay", optim.get("weight_decay", 0.0), 0.0)
        betas, eps = (0.9, 0.999), 1e-8
        if name == "adam":
            raw = _as_list(optim.get("betas", [0.9, 0.999]))
            rule = "a pair [β1, β2] of numbers in [0, 1)"
            if raw is None or len(raw) != 2:
                raise ConfigError("optim.betas", optim.get("betas"), rule)
            for b in raw:
                if not isinstance(b, Real) or isinstance(b, bool) or not 0.0 <= b < 1.0:
                    raise ConfigError("optim.betas", raw, rule)
            betas = (float(raw[0]), float(raw[1]))
            eps = check_number("optim.eps", optim.get("eps", 1e-8), 0.0, open_lo=True)
        schedule = choose("optim.schedule", optim.get("schedule", "constant"), SCHEDULES)
        milestones = _as_list(optim.get("milestones", []))
        if milestones is None:
            raise ConfigError("optim.milestones", optim.get("milestones"), "a list of epochs, e.g. [30, 60]")
        for m in milestones:
            check_int("optim.milestones", m, 1)
        if list(milestones) != sorted(set(milestones)):
            raise ConfigError("optim.milestones", milestones, "epochs in increasing order, no repeats")
        if schedule == "step" and not milestones:
            raise ConfigError("optim.milestones", milestones, "a non-empty list of epochs for optim.schedule=step")
        gamma = check_number("optim.gamma", optim.get("gamma", 0.1), 0.0, open_lo=True)
        grid = optim.get("lr_grid")
        if grid is not None:
            values = _as_list(grid)
            if not values:
                raise ConfigError("optim.lr_grid", grid, "null or a non-empty list of learning rates > 0")
            grid = tuple(check_number("optim.lr_grid", v, 0.0, open_lo=True) for v in values)
            if len(set(grid)) != len(grid):
                raise ConfigError("optim.lr_grid", list(grid), "distinct learning rates")
        log_every = optim.get("log_every")
        if log_every is not None:
            log_every = check_int("optim.log_every", log_every, 1)
        sampling = choose("data.sampling", (data_cfg or {}).get("sampling", "shuffle"), SAMPLINGS)
        steps = optim.get("steps_per_epoch")
        if steps is not None:
            steps = check_int("optim.steps_per_epoch", steps, 1)
            if sampling != "replacement":
                raise ConfigError("optim.steps_per_epoch", steps, "null unless data.sampling=replacement "
                                  "(a shuffled epoch is one pass over the training set)")
        loss = choose("optim.loss", optim.get("loss", "ce"), LOSSES)
        wd_convention = choose("optim.wd_convention", optim.get("wd_convention", "torch"), WD_CONVENTIONS)
        wd_on = choose("optim.wd_on", optim.get("wd_on", "all"), WD_ON)
        stop_below = optim.get("stop_below_acc")
        if stop_below is not None:
            stop_below = check_number("optim.stop_below_acc", stop_below, 0.0, 1.0)
        patience = check_int("optim.stop_patience", optim.get("stop_patience", 3), 1)
        after = check_int("optim.stop_after", optim.get("stop_after", 100), 0)
        return cls(name=name, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay, betas=betas,
                   eps=eps, schedule=schedule, milestones=tuple(int(m) for m in milestones), gamma=gamma,
                   lr_grid=grid, log_every=log_every, steps_per_epoch=steps, sampling=sampling, loss=loss,
                   wd_convention=wd_convention, wd_on=wd_on, stop_below_acc=stop_below, stop_patience=patience,
                   stop_after=after)

    @property
    def lrs(self) -> tuple[float, ...]:
        """The learning rates a replicate is trained with: the grid, or just ``optim.lr``."""
        return self.lr_grid if self.lr_grid is not None else (self.lr,)

    def steps(self, n_train: int, batch_size: int, drop_last: bool = False) -> int:
        """Optimiser steps per epoch."""
        if self.sampling == "replacement":
            return self.steps_per_epoch or max(1, n_train // batch_size)
        return n_train // batch_size if drop_last else math.ceil(n_train / batch_size)

    @property
    def torch_weight_decay(self) -> float:
        """The ``weight_decay`` handed to torch: λ (``wd_convention=torch``) or 2λ (``paper``: gradient 2λW)."""
        return 2.0 * self.weight_decay if self.wd_convention == "paper" else self.weight_decay


def loss_of(name: str, logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """The training loss ``optim.loss`` of ``logits`` (n, k) against labels ``y`` (n,).

    ``ce``: cross-entropy; ``mse``: ``F.mse_loss(logits, one_hot(y, k).float())``, the mean over the k classes
    per sample. ``reduction``: ``mean`` over the batch (so ``mse`` is the mean over batch × classes) or ``sum``.
    """
    if name == "mse":
        per_sample = sample_losses(logits, y, "mse")
        return per_sample.mean() if reduction == "mean" else per_sample.sum()
    return F.cross_entropy(logits, y, reduction=reduction)


def make_optimizer(spec: OptimSpec, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The ``optim.name`` optimiser over ``params`` at learning rate ``lr`` (a grid point or ``optim.lr``), with
    weight decay :attr:`OptimSpec.torch_weight_decay` on every parameter (``wd_on=all``: one parameter group) or
    on the parameters with ≥ 2 dims only (``weights_only``: two groups, the others with weight decay 0)."""
    decay = spec.torch_weight_decay
    groups: Iterable = params
    if spec.wd_on == "weights_only":
        params = list(params)
        groups = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    if spec.name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=spec.betas, eps=spec.eps, weight_decay=decay)
    return torch.optim.SGD(groups, lr=lr, momentum=spec.momentum, weight_decay=decay, nesterov=False)


@dataclass(frozen=True)
class LRFactor:
    """``factor(t)``: the learning-rate multiplier after t steps (module docstring); picklable."""

    schedule: str
    total_steps: int
    steps_per_epoch: int
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __call__(self, t: int) -> float:
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(t, self.total_steps) / max(1, self.total_steps)))
        if self.schedule == "step":
            passed = sum(1 for m in self.milestones if m * self.steps_per_epoch <= t)
            return self.gamma ** passed
        return 1.0


def make_scheduler(spec: OptimSpec, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-iteration ``LambdaLR`` for ``optim.schedule``, or None for ``constant`` (nothing to step)."""
    if spec.schedule == "constant":
        return None
    factor = LRFactor(spec.schedule, spec.epochs * steps_per_epoch, steps_per_epoch, spec.milestones, spec.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device | str,
                  sampling: str, steps: int, drop_last: bool = False) -> Sequence[Tensor]:
    """One epoch's minibatch index tensors (on ``device``), drawn from the CPU ``generator``.

    ``shuffle``: a permutation of range(n) cut into chunks of ``batch_size`` (the last one partial unless
    ``drop_last``); ``replacement``: ``steps`` rows of ``batch_size`` i.i.d. uniform indices. One
    host → device transfer per epoch.
    """
    if sampling == "replacement":
        return torch.randint(0, n, (steps, batch_size), generator=generator).to(device).unbind(0)
    order = torch.randperm(n, generator=generator).to(device)
    stop = n - n % batch_size if drop_last else n
    return order[:stop].split(batch_size)

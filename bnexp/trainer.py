"""The training loop of ``bnexp train``: one model, one learning rate, from initialisation to its last log point.

:class:`Trainer` owns the optimiser (``bnexp.optim``), the minibatch generator and the running sums since the
last log point, and turns each log point into rows ``(seed, step, layer, metric, value)``:

* log points: ``optim.log_every = null`` → the end of every epoch, step = epoch; ``optim.log_every = k`` →
  every k optimiser steps and at the last step, step = the iteration count t (steps taken so far). Step 0 is
  the network before training (:meth:`Trainer.initial_rows`).
* at a log point t > 0: ``train_loss`` / ``train_acc``, running means over the minibatches since the previous
  log point (train mode, weights changing, weighted by batch size); ``test_loss`` / ``test_acc`` in eval mode
  over the full test set; and the probe (``bnexp.probe``) on the fixed probe batch in train mode, BN running
  statistics saved and restored: representation metrics, ``loss``, ``grad_norm`` per weight layer,
  ``weight_<metric>`` per weight layer and, with ``probe.alignment``, ``grad_alignment`` and
  ``grad_cosine_full``. Step 0: ``train_*`` and ``test_*`` are passes over the full sets with batch statistics
  (torch BN's running statistics are still mean 0, variance 1 before training; eval mode would measure the
  network without its normalisation).
* one device → host transfer per log point (``probe.values_to_rows``); nothing in the step loop syncs.

Devices and precision (:func:`precision_plan`, ``runtime.amp``): the dataset is resident on the device; on CUDA
a convolutional model (one with a ``Conv2d``) and its image inputs use ``torch.channels_last``. With bf16
autocast (``runtime.amp=auto`` on CUDA with ``dtype=float32``, or ``bf16`` anywhere) the training forward
pass, the loss and the test-set passes run under ``torch.autocast(device, torch.bfloat16)``. Autocast has no
rule for ``batch_norm`` (it is in neither of its CUDA op lists: it runs in its input's dtype, bf16 after a bf16
conv), so every normalisation layer gets a forward pre-hook that casts its input to float32
(:func:`float32_norms`): statistics, normalisation and running averages are float32, and the next conv or
Linear casts back to bf16. The probe runs without autocast (float32 representations, float64 metrics).

Randomness of one (replicate, learning rate): the minibatch indices come from a CPU generator seeded with the
replicate's ``shuffle`` stream (``data.derive_seed``); torch's global generator (dropout) is seeded from a child
of that stream inside ``torch.random.fork_rng`` (:func:`train_seed`), so runs are reproducible and the caller's
global state is untouched. Every learning rate of a grid sees the same initial weights and the same minibatch
order. :meth:`Trainer.state_dict` holds everything needed to continue bit for bit (``bnexp.checkpoint``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp import data
from bnexp.errors import ConfigError, choose
from bnexp.nn.norms import BatchNormCenter, BatchNormNoCenter, BatchNormTheory
from bnexp.optim import OptimSpec, epoch_batches, make_optimizer, make_scheduler
from bnexp.probe import ProbeSpec, dropout_off, preserved_buffers, probe, values_to_rows

__all__ = ["AMP_SETTINGS", "Precision", "Trainer", "check_amp", "evaluate", "float32_norms", "precision_plan",
           "rng_state", "set_rng_state", "train_seed"]

AMP_SETTINGS = ("auto", "bf16", "off")
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, BatchNormTheory, BatchNormCenter, BatchNormNoCenter,
              nn.GroupNorm, nn.LayerNorm)

Row = tuple[int, int, "int | None", str, float]


# ------------------------------------------------------------------------------------------------ precision


def check_amp(setting) -> str:
    """``runtime.amp``: ``auto``, ``bf16`` or ``off`` (YAML reads a bare ``off`` as false, accepted too)."""
    if setting is False or setting is None:
        return "off"
    return choose("runtime.amp", setting, AMP_SETTINGS)


@dataclass(frozen=True)
class Precision:
    """How a run computes: the autocast dtype (None: none) and whether conv inputs/weights are channels_last."""

    autocast: torch.dtype | None = None
    channels_last: bool = False

    def describe(self) -> str:
        amp = "bf16 autocast (norms float32)" if self.autocast is not None else "no autocast"
        return amp + (", channels_last" if self.channels_last else "")


def precision_plan(device_type: str, dtype: torch.dtype, amp, conv: bool) -> Precision:
    """The precision of a training run (module docstring).

    ``amp``: ``auto`` → bf16 autocast on CUDA when ``dtype`` is float32, none on the CPU or for float64;
    ``bf16`` → bf16 autocast on any device (ConfigError unless float32: autocast leaves float64 alone);
    ``off`` → none. ``channels_last``: on CUDA for a convolutional model (``conv``) only.
    """
    amp = check_amp(amp)
    if amp == "bf16" and dtype != torch.float32:
        raise ConfigError("runtime.amp", amp, f"bf16 autocast needs dtype=float32 (got {dtype}; autocast "
                          "does not cast float64); use runtime.amp=off or dtype=float32")
    use = amp == "bf16" or (amp == "auto" and device_type == "cuda" and dtype == torch.float32)
    return Precision(torch.bfloat16 if use else None, conv and device_type == "cuda")


def is_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _float32_inputs(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if isinstance(a, Tensor) and a.dtype in (torch.bfloat16, torch.float16) else a
                 for a in args)


def float32_norms(model: nn.Module) -> list:
    """Make every normalisation layer of ``model`` compute in float32 under autocast (a forward pre-hook casts
    a bf16/fp16 input to float32). Returns the hook handles."""
    return [m.register_forward_pre_hook(_float32_inputs) for m in model.modules() if isinstance(m, NORM_TYPES)]


# ------------------------------------------------------------------------------------------------ randomness


def train_seed(seed: int) -> int:
    """The seed of torch's global generator while replicate ``seed`` trains: a child of its ``shuffle`` stream
    (independent of the data, shuffle, model and weight draws)."""
    return data.derive_seed(seed, "shuffle", 1)


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int | None = None):
    """torch's global generators (the CPU's and, on CUDA, the device's) forked for the block, restored on exit;
    seeded with ``seed`` when given."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def pretrain_seeded(prepare, model: nn.Module, x_train: Tensor, y_train: Tensor, seed: int,
                    device: torch.device) -> dict:
    """``prepare(model, x_train, y_train, seed)`` (pre-training) with torch's global generator seeded from
    replicate ``seed`` (``train_seed(seed) + 1``) in a fork: it never shifts the training stream."""
    with forked_rng(device, train_seed(seed) + 1):
        return prepare(model, x_train, y_train, seed)


def rng_state(device: torch.device) -> dict:
    """torch's global generator states (CPU, and the CUDA device's)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ------------------------------------------------------------------------------------------------ evaluation


def chunks(n: int, size: int, *, merge_single: bool = False) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``size`` covering ``range(n)``; with ``merge_single`` a last range of one sample
    joins the one before (batch statistics of a single sample are undefined)."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if merge_single and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int,
             precision: Precision = Precision(), *, batch_statistics: bool = False) -> tuple[Tensor, Tensor]:
    """(mean cross-entropy, accuracy) of ``model`` on ``(x, y)`` in eval mode, in chunks of ``batch_size``
    (norms without running statistics normalise each chunk with its own statistics, as in training).

    ``batch_statistics``: instead, every norm normalises each chunk with the chunk's statistics (train mode,
    running statistics restored after, dropout off). Used before training, when torch BN's running statistics
    are still their initial mean 0 and variance 1 and eval mode would measure a network without normalisation.
    Returns 0-d float64 tensors on the device (no host sync); the model's mode is restored.
    """
    was_training = model.training
    model.train(batch_statistics)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    keep = preserved_buffers(model) if batch_statistics else contextlib.nullcontext()
    quiet = dropout_off(model) if batch_statistics else contextlib.nullcontext()
    with torch.no_grad(), keep, quiet, _autocast(x.device, precision):
        for start, stop in chunks(len(x), batch_size, merge_single=batch_statistics):
            logits = model(_layout(x[start:stop], precision))
            yb = y[start:stop]
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").to(torch.float64)
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def _autocast(device: torch.device, precision: Precision):
    if precision.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.autocast)


def _layout(x: Tensor, precision: Precision) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if precision.channels_last and x.dim() == 4 else x


# ------------------------------------------------------------------------------------------------ trainer


class Trainer:
    """Trains ``model`` on ``(x_train, y_train)`` with one learning rate; see the module docstring.

    ``model`` is already on the device in its dtype (``train.make_model``); the constructor applies the
    precision plan to it (channels_last, float32 norms under autocast).
    """

    def __init__(self, model: nn.Module, split: tuple[Tensor, Tensor, Tensor, Tensor],
                 probe_batch: tuple[Tensor, Tensor], *, seed: int, lr: float, optim: OptimSpec, spec: ProbeSpec,
                 batch_size: int, drop_last: bool = False, precision: Precision = Precision()):
        self.precision = precision
        if precision.channels_last:
            model.to(memory_format=torch.channels_last)
        if precision.autocast is not None:
            float32_norms(model)
        self.model, self.seed, self.lr, self.optim, self.spec = model, seed, lr, optim, spec
        self.x_train, self.y_train, self.x_test, self.y_test = split
        self.x_train, self.x_test = _layout(self.x_train, precision), _layout(self.x_test, precision)
        self.x_probe, self.y_probe = _layout(probe_batch[0], precision), probe_batch[1]
        self.device = self.x_train.device
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        self.steps_per_epoch = optim.steps(len(self.x_train), self.batch_size, self.drop_last)
        self.total_steps = optim.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(optim, model.parameters(), lr)
        self.scheduler = make_scheduler(optim, self.optimizer, self.steps_per_epoch)
        self.shuffle = torch.Generator().manual_seed(data.derive_seed(seed, "shuffle"))
        self.epoch = 0
        self.iteration = 0
        self.last_train_loss: float | None = None
        self._reset_sums()

    # ------------------------------------------------------------------ rows

    def _reset_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.float64, device=self.device)
        self.seen = 0

    def _measuring(self):
        """Measurements draw from a fork of torch's global generator (dropout in a train-mode probe), so that
        what is measured never changes the training run's random stream."""
        return forked_rng(self.device)

    def initial_rows(self) -> list[Row]:
        """Step 0: the probe, and ``train_*`` / ``test_*`` from passes over the full sets with batch statistics
        (chunks of ``batch_size``; before training torch BN's running statistics are mean 0, variance 1, and an
        eval-mode pass would measure the network without its normalisation)."""
        with self._measuring():
            self.model.train()  # probes use batch statistics, as in every paper
            items = probe(self.model, self.x_probe, self.y_probe, self.spec)
            for prefix, xs, ys in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
                loss, acc = evaluate(self.model, xs, ys, self.batch_size, self.precision, batch_statistics=True)
                items += [(None, f"{prefix}_loss", loss), (None, f"{prefix}_acc", acc)]
        return values_to_rows(items, self.seed, 0)

    def log(self, step: int) -> list[Row]:
        """The rows of a log point at ``step``; resets the running sums."""
        with self._measuring():
            test_loss, test_acc = evaluate(self.model, self.x_test, self.y_test, self.batch_size, self.precision)
            items = [(None, "train_loss", self.loss_sum / self.seen), (None, "train_acc", self.correct / self.seen),
                     (None, "test_loss", test_loss), (None, "test_acc", test_acc)]
            self.model.train()
            items += probe(self.model, self.x_probe, self.y_probe, self.spec)  # train mode; buffers restored
        rows = values_to_rows(items, self.seed, step)  # the log point's one host sync
        self._reset_sums()
        self.last_train_loss = rows[0][4]
        return rows

    # ------------------------------------------------------------------ training

    def step(self, idx: Tensor) -> None:
        """One optimiser step on the minibatch ``idx``; the running sums stay on the device."""
        xb, yb = _layout(self.x_train[idx], self.precision), self.y_train[idx]
        with _autocast(self.device, self.precision):
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        n = len(idx)
        self.loss_sum += loss.detach().to(torch.float64) * n
        self.correct += (logits.detach().argmax(1) == yb).sum()
        self.seen += n
        self.iteration += 1

    def train_epoch(self, emit: Callable[[list[Row]], None] | None = None, bar=None) -> None:
        """The next epoch's steps. With ``emit``, the log points that fall in it are emitted (per-epoch logging:
        at its end); without, nothing is measured (benchmarks)."""
        self.model.train()
        every = self.optim.log_every
        for idx in epoch_batches(len(self.x_train), self.batch_size, self.shuffle, self.device,
                                 self.optim.sampling, self.steps_per_epoch, self.drop_last):
            self.step(idx)
            if bar is not None:
                bar.update()
            if emit is not None and every is not None and (
                    self.iteration % every == 0 or self.iteration == self.total_steps):
                self._emit(emit, self.log(self.iteration), bar)
                self.model.train()
        self.epoch += 1
        if emit is not None and every is None:
            self._emit(emit, self.log(self.epoch), bar)

    def _emit(self, emit, rows: list[Row], bar) -> None:
        emit(rows)
        if bar is not None:
            logged = {name: value for _, _, layer, name, value in rows if layer is None}
            bar.set_postfix(epoch=self.epoch + 1 if self.optim.log_every else self.epoch,
                            train_loss=f"{logged['train_loss']:.4g}", test_acc=f"{logged['test_acc']:.3f}")

    def fit(self, emit: Callable[[list[Row]], None], on_epoch_end: Callable[[Trainer], None] | None = None,
            bar=None) -> None:
        """Train the remaining epochs, emitting every log point's rows; ``on_epoch_end(self)`` after each epoch
        (checkpoints)."""
        while self.epoch < self.optim.epochs:
            self.train_epoch(emit, bar)
            if on_epoch_end is not None:
                on_epoch_end(self)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "shuffle": self.shuffle.get_state(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "sums": (self.loss_sum.cpu(), self.correct.cpu(), self.seen),
            "last_train_loss": self.last_train_loss,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle.set_state(state["shuffle"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        loss_sum, correct, seen = state["sums"]
        self.loss_sum, self.correct, self.seen = loss_sum.to(self.device), correct.to(self.device), int(seen)
        self.last_train_loss = state["last_train_loss"]

"""The training loop of ``bnexp train``: one model, one learning rate, from initialisation to its last log point.

:class:`Trainer` owns the optimiser (:mod:`bnexp.training.optim`), the minibatch generator and the running
sums since the last log point, and turns each log point into rows ``(seed, step, layer, metric, value)``:

* log points: ``optim.log_every = null`` → the end of every epoch, step = epoch; ``optim.log_every = k`` →
  every k optimiser steps and at the last step, step = the iteration count t (steps taken so far). Step 0 is
  the network before training (:meth:`Trainer.initial_rows`).
* a log point is its list of measurements (:mod:`bnexp.training.measures`: running means of the training
  minibatches, a test-set pass, the probe), each with its metric names and cadence; the loop iterates over
  them inside a fork of torch's global generator, so that measuring never shifts the training stream.
* one device → host transfer per log point (``probe.values_to_rows``); nothing in the step loop syncs.
* divergence: a log point whose ``diverged`` row is 1 (``probe.weight_ranks``, :class:`~bnexp.training.measures.
  WeightRanks`: a parameter or the training loss is non-finite) is the run's last: its rows are written, then
  :attr:`Trainer.stopped` ends the training (the remaining epochs would only compute nan). Without that row a
  run trains to its end, as before.
* early stop (``optim.stop_below_acc``, off by default; the low-rank code's rule): a run whose training accuracy
  (``train_full_acc`` with ``probe.train_pass``, else ``train_acc``) is ≤ the threshold at ``optim.stop_patience``
  consecutive log points after epoch ``optim.stop_after`` ends at the last of them (``stop_reason``).
* the loss of every step is ``optim.loss`` (:func:`~bnexp.training.optim.loss_of`: ``ce`` or ``mse``).

Precision (:mod:`bnexp.training.precision`): the constructor applies the plan to the model (channels_last,
float32 norms under autocast); the forward pass and loss of each step run under its autocast.

Randomness (:mod:`bnexp.training.rng`): the minibatch indices come from a CPU generator seeded with the
replicate's ``shuffle`` stream; the caller runs :meth:`Trainer.fit` with torch's global generator seeded from
``train_seed(seed)``. Every learning rate of a grid sees the same initial weights and the same minibatch order.
:meth:`Trainer.state_dict` holds everything needed to continue bit for bit (:mod:`bnexp.training.checkpoint`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bnexp import data
from bnexp.probe import ProbeSpec, values_to_rows
from bnexp.results import Row
from bnexp.training import precision as plan
from bnexp.training.measures import EVERY, LOG, START, Measurement, default_measurements
from bnexp.training.optim import OptimSpec, epoch_batches, loss_of, make_optimizer, make_scheduler
from bnexp.training.precision import PLAIN, Precision
from bnexp.training.rng import forked_rng

__all__ = ["Trainer"]


class Trainer:
    """Trains ``model`` on ``(x_train, y_train)`` with one learning rate; see the module docstring.

    ``model`` is already on the device in its dtype (``engines.train.make_model``); the constructor applies the
    precision plan to it. ``measurements`` (default: :func:`~bnexp.training.measures.default_measurements`)
    are the log points' measurements, in the order of their rows. ``spectra_sink(seed, step, spectra)``, when
    set, receives the weight spectra of ``probe.spectra`` (``fit.train_all``: the run directory's files).
    """

    def __init__(self, model: nn.Module, split: tuple[Tensor, Tensor, Tensor, Tensor],
                 probe_batch: tuple[Tensor, Tensor], *, seed: int, lr: float, optim: OptimSpec, spec: ProbeSpec,
                 batch_size: int, drop_last: bool = False, precision: Precision = PLAIN,
                 measurements: Sequence[Measurement] | None = None):
        self.precision = precision
        self.model = plan.apply(model, precision)
        self.seed, self.lr, self.optim, self.spec = seed, lr, optim, spec
        self.measurements = tuple(measurements) if measurements is not None else default_measurements(spec)
        self.x_train, self.y_train, self.x_test, self.y_test = split
        self.x_train, self.x_test = plan.layout(self.x_train, precision), plan.layout(self.x_test, precision)
        self.x_probe, self.y_probe = plan.layout(probe_batch[0], precision), probe_batch[1]
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
        self.stopped = False  # a log point found the run diverged, or the early-stop rule held: no more steps
        self.stop_reason: str | None = None  # "diverged" | "early_stop"
        self.low_acc_streak = 0  # consecutive log points past optim.stop_after at accuracy ≤ optim.stop_below_acc
        self.at_step = 0  # the step of the log point being measured
        self.seconds = {"train": 0.0, "measure": 0.0}  # wall time in training epochs, of it in log points
        self.spectra_sink: Callable[[int, int, list], None] | None = None
        self._reset_sums()

    # ------------------------------------------------------------------ rows

    def _reset_sums(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.float64, device=self.device)
        self.seen = 0

    def measure(self, when: str, step: int) -> list[Row]:
        """The rows of the measurements of cadence ``when`` at ``step``. They draw from a fork of torch's global
        generator (dropout in a train-mode probe), so that what is measured never changes the training run's
        random stream."""
        self.at_step = step
        start = time.perf_counter()
        with forked_rng(self.device):
            items = [item for m in self.measurements if m.when in (when, EVERY) for item in m(self)]
        rows = values_to_rows(items, self.seed, step)  # the log point's one host sync
        self.seconds["measure"] += time.perf_counter() - start
        if _logged(rows).get("diverged") == 1.0:
            self.stopped, self.stop_reason = True, "diverged"
        return rows

    def initial_rows(self) -> list[Row]:
        """Step 0: the network before training (the ``START`` measurements)."""
        return self.measure(START, 0)

    def log(self, step: int) -> list[Row]:
        """The rows of a log point at ``step`` (the ``LOG`` measurements); resets the running sums."""
        rows = self.measure(LOG, step)
        self._reset_sums()
        logged = _logged(rows)
        self.last_train_loss = logged.get("train_loss")
        limit = self.optim.stop_below_acc
        if limit is not None and not self.stopped and self.iteration > self.optim.stop_after * self.steps_per_epoch:
            accuracy = logged.get("train_full_acc", logged.get("train_acc"))
            self.low_acc_streak = self.low_acc_streak + 1 if accuracy is not None and accuracy <= limit else 0
            if self.low_acc_streak >= self.optim.stop_patience:
                self.stopped, self.stop_reason = True, "early_stop"
        return rows

    # ------------------------------------------------------------------ training

    def step(self, idx: Tensor) -> None:
        """One optimiser step on the minibatch ``idx``; the running sums stay on the device."""
        xb, yb = plan.layout(self.x_train[idx], self.precision), self.y_train[idx]
        with plan.autocast(self.device, self.precision):
            logits = self.model(xb)
            loss = loss_of(self.optim.loss, logits, yb)
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
        start = time.perf_counter()
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
                if self.stopped:
                    break
        self.epoch += 1
        if emit is not None and every is None and not self.stopped:
            self._emit(emit, self.log(self.epoch), bar)
        self.seconds["train"] += time.perf_counter() - start

    def _emit(self, emit, rows: list[Row], bar) -> None:
        emit(rows)
        if bar is not None:
            logged = _logged(rows)
            bar.set_postfix(epoch=self.epoch + 1 if self.optim.log_every else self.epoch,
                            train_loss=f"{logged['train_loss']:.4g}", test_acc=f"{logged['test_acc']:.3f}")

    def fit(self, emit: Callable[[list[Row]], None], on_epoch_end: Callable[[Trainer], None] | None = None,
            bar=None) -> None:
        """Train the remaining epochs, emitting every log point's rows; ``on_epoch_end(self)`` after each epoch
        (checkpoints). Ends early once a log point finds the run diverged (:attr:`stopped`)."""
        while self.epoch < self.optim.epochs and not self.stopped:
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
            "stopped": self.stopped,
            "stop_reason": self.stop_reason,
            "low_acc_streak": self.low_acc_streak,
            "at_step": self.at_step,
            "measures": [m.state_dict() if hasattr(m, "state_dict") else None for m in self.measurements],
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
        self.stopped, self.at_step = bool(state.get("stopped", False)), int(state.get("at_step", 0))
        self.stop_reason = state.get("stop_reason", "diverged" if self.stopped else None)
        self.low_acc_streak = int(state.get("low_acc_streak", 0))
        for m, saved in zip(self.measurements, state.get("measures") or ()):
            if saved is not None:
                m.load_state_dict(saved, self.device)


def _logged(rows: list[Row]) -> dict[str, float]:
    """The whole-network values (layer empty) of a log point's rows, by metric name."""
    return {name: value for _, _, layer, name, value in rows if layer is None}

"""What a training run measures at its log points: a list of small measurement objects, one per idea.

A log point of :class:`bnexp.training.loop.Trainer` is the list of its measurements: each one knows its metric
``names``, its cadence ``when`` (``START``: step 0, the network before training; ``LOG``: every log point
t > 0) and returns items ``(layer, metric, 0-d tensor)`` on the device; the trainer turns them into rows with
one host transfer (``probe.values_to_rows``). The order of :func:`default_measurements` is the order of the
rows in metrics.csv:

* step 0 — the probe (``bnexp.probe``) on the fixed probe batch in train mode, then ``train_*`` and ``test_*``
  from passes over the full sets with batch statistics (:class:`SetPass` with ``batch_statistics``: torch BN's
  running statistics are still mean 0, variance 1 before training, and an eval-mode pass would measure the
  network without its normalisation);
* t > 0 — ``train_loss`` / ``train_acc``, running means over the minibatches since the previous log point
  (:class:`RunningMeans`: train mode, weights changing, weighted by batch size); ``test_loss`` / ``test_acc``
  in eval mode over the full test set; then the probe (BN running statistics saved and restored, so measuring
  never changes training): representation metrics, ``loss``, ``grad_norm`` per weight layer,
  ``weight_<metric>`` per weight layer and, with ``probe.alignment``, ``grad_alignment`` and
  ``grad_cosine_full``.

Passes run in chunks of ``data.batch_size`` (:func:`evaluate`; norms without running statistics — bn_theory,
bn_center — normalise with each chunk's statistics, as in training).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.probe import ProbeSpec, dropout_off, preserved_buffers, probe
from bnexp.training.precision import PLAIN, Precision, autocast, layout

if TYPE_CHECKING:
    from bnexp.training.loop import Trainer

__all__ = ["LOG", "START", "Measurement", "Probe", "RunningMeans", "SetPass", "chunks", "default_measurements",
           "evaluate"]

START, LOG = "start", "log"  # cadences: step 0 (before training), every log point t > 0

Item = tuple["int | None", str, Tensor]


class Measurement(Protocol):
    """One measurement of a log point: its metric names, its cadence, and the items it measures."""

    when: str

    @property
    def names(self) -> tuple[str, ...]: ...

    def __call__(self, trainer: Trainer) -> list[Item]: ...


# ------------------------------------------------------------------------------------------------ passes


def chunks(n: int, size: int, *, merge_single: bool = False) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``size`` covering ``range(n)``; with ``merge_single`` a last range of one sample
    joins the one before (batch statistics of a single sample are undefined)."""
    bounds = [(start, min(start + size, n)) for start in range(0, n, size)]
    if merge_single and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int,
             precision: Precision = PLAIN, *, batch_statistics: bool = False) -> tuple[Tensor, Tensor]:
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
    with torch.no_grad(), keep, quiet, autocast(x.device, precision):
        for start, stop in chunks(len(x), batch_size, merge_single=batch_statistics):
            logits = model(layout(x[start:stop], precision))
            yb = y[start:stop]
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").to(torch.float64)
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


# ------------------------------------------------------------------------------------------------ measurements


@dataclass(frozen=True)
class RunningMeans:
    """``train_loss``, ``train_acc``: means over the minibatches since the previous log point (the trainer's
    running sums, reset after every log point)."""

    when: str = LOG

    @property
    def names(self) -> tuple[str, ...]:
        return ("train_loss", "train_acc")

    def __call__(self, trainer: Trainer) -> list[Item]:
        return [(None, "train_loss", trainer.loss_sum / trainer.seen),
                (None, "train_acc", trainer.correct / trainer.seen)]


@dataclass(frozen=True)
class SetPass:
    """``<split>_loss``, ``<split>_acc``: one :func:`evaluate` pass over the whole ``train`` or ``test`` set."""

    split: str
    when: str = LOG
    batch_statistics: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (f"{self.split}_loss", f"{self.split}_acc")

    def __call__(self, trainer: Trainer) -> list[Item]:
        x, y = getattr(trainer, f"x_{self.split}"), getattr(trainer, f"y_{self.split}")
        loss, acc = evaluate(trainer.model, x, y, trainer.batch_size, trainer.precision,
                             batch_statistics=self.batch_statistics)
        return [(None, f"{self.split}_loss", loss), (None, f"{self.split}_acc", acc)]


@dataclass(frozen=True)
class Probe:
    """The probe (``bnexp.probe``) of the fixed probe batch in train mode (batch statistics, as every paper
    measures; buffers restored)."""

    spec: ProbeSpec
    when: str = LOG

    @property
    def names(self) -> tuple[str, ...]:
        spec = self.spec
        return (*spec.metrics, "loss", *(("grad_norm",) if spec.grad_norms else ()),
                *(("grad_alignment", "grad_cosine_full") if spec.alignment else ()),
                *(f"weight_{m}" for m in spec.weight_metrics))

    def __call__(self, trainer: Trainer) -> list[Item]:
        trainer.model.train()
        return probe(trainer.model, trainer.x_probe, trainer.y_probe, self.spec)


def default_measurements(spec: ProbeSpec) -> tuple[Measurement, ...]:
    """The measurements of ``bnexp train`` (module docstring), in the order of their rows."""
    return (Probe(spec, START), SetPass("train", START, batch_statistics=True),
            SetPass("test", START, batch_statistics=True),
            RunningMeans(), SetPass("test"), Probe(spec))

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

Optional (the low-rank paper; ``probe.*`` keys, off by default), after those:

* ``probe.train_pass`` — ``train_full_loss`` / ``train_full_acc``: an eval-mode pass over the full training set
  at every log point (spec M5, M6; step 0: with batch statistics, as ``train_*``), :class:`SetPass` ``train_full``;
* ``probe.weight_ranks`` — :class:`WeightRanks` at step 0 and every log point: ``weight_rank`` and ``weight_fro``
  per weight matrix, then ``avg_rank``, ``mean_weight_norm``, ``weight_distance`` (not at step 0) and
  ``diverged``; with ``probe.spectra`` it also hands every matrix's singular values to the trainer's
  ``spectra_sink`` (the run directory's ``spectra/``, :mod:`bnexp.results.spectra`).

``probe.set_metrics`` (the ortho paper's training figures) — :class:`SetMetrics` at step 0 and every log point:
``set_<metric>`` of the output logits (layer = depth) and of the last hidden layer (layer = depth − 1), each the
mean over the training set's minibatch-sized chunks.

``probe.bn_eval=full_train_stats``: the eval-mode passes of log points t > 0 normalise with the statistics of the
full training set instead of the running averages (:func:`full_train_statistics`).

Passes run in chunks of ``data.batch_size`` (:func:`evaluate`; norms without running statistics — bn_theory,
bn_center — normalise with each chunk's statistics, as in training). Their loss is ``optim.loss`` (``ce`` or
``mse``, :func:`bnexp.training.optim.loss_of`), and so is the probe's own ``loss`` row and the gradients of its
``grad_norm`` (``ProbeSpec.loss``, set by ``engines.train.probe_spec``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from bnexp import metrics
from bnexp.metrics.weights import frobenius, weight_rank, weight_spectra
from bnexp.probe import ProbeSpec, dropout_off, preserved_buffers, probe
from bnexp.training.optim import loss_of
from bnexp.training.precision import PLAIN, Precision, autocast, layout

if TYPE_CHECKING:
    from bnexp.training.loop import Trainer

__all__ = ["EVERY", "LOG", "START", "Measurement", "Probe", "RunningMeans", "SetMetrics", "SetPass", "WeightRanks",
           "chunks", "default_measurements", "evaluate", "full_train_statistics"]

START, LOG = "start", "log"  # cadences: step 0 (before training), every log point t > 0
EVERY = "every"  # both: step 0 and every log point (one object, for measurements that carry state across them)

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
             precision: Precision = PLAIN, *, batch_statistics: bool = False,
             loss: str = "ce") -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) of ``model`` on ``(x, y)`` in eval mode, in chunks of ``batch_size`` (norms
    without running statistics normalise each chunk with its own statistics, as in training). ``loss``: the
    ``optim.loss`` (``ce``: cross-entropy, ``mse``: squared error to one-hot targets, mean over classes).

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
            loss_sum += loss_of(loss, logits, yb, reduction="sum").to(torch.float64)
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


@contextlib.contextmanager
def full_train_statistics(model: nn.Module, x_train: Tensor, precision: Precision = PLAIN):
    """``probe.bn_eval=full_train_stats`` (spec lowrank §1.2, the paper's test-time BN): inside the block every
    running-statistics BN layer normalises in eval mode with the mean and (biased) variance of the *full training
    set* — those of one train-mode forward of all of ``x_train`` at once, so layer ℓ's statistics are those of its
    inputs when every earlier layer is normalised with the full set's own, and an eval pass over the training set
    gives exactly that train-mode forward's outputs. The running statistics are restored on exit: measuring never
    changes training."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        yield
        return
    was_training, momenta = model.training, [m.momentum for m in norms]
    with preserved_buffers(model), dropout_off(model):
        try:
            for m in norms:
                m.momentum = 1.0  # running ← this forward's batch statistics
            model.train()
            counts: dict[nn.Module, int] = {}  # values per channel each norm saw (N, or N·H·W)
            hooks = [m.register_forward_hook(lambda mod, inp, out: counts.__setitem__(mod, inp[0].numel()
                                                                                       // inp[0].shape[1]))
                     for m in norms]
            try:
                with torch.no_grad(), autocast(x_train.device, precision):
                    model(layout(x_train, precision))
            finally:
                for hook in hooks:
                    hook.remove()
            with torch.no_grad():
                for m in norms:  # torch stores the unbiased variance; normalise as the forward did
                    n = counts[m]
                    m.running_var.mul_((n - 1) / n)
            model.eval()
            yield
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            model.train(was_training)


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
    """``<name>_loss``, ``<name>_acc``: one :func:`evaluate` pass over the whole ``train`` or ``test`` set
    (``name`` defaults to the split; ``train_full`` for ``probe.train_pass``)."""

    split: str
    when: str = LOG
    batch_statistics: bool = False
    name: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        prefix = self.name or self.split
        return (f"{prefix}_loss", f"{prefix}_acc")

    def __call__(self, trainer: Trainer) -> list[Item]:
        x, y = getattr(trainer, f"x_{self.split}"), getattr(trainer, f"y_{self.split}")
        exact = not self.batch_statistics and getattr(trainer.spec, "bn_eval", "running") == "full_train_stats"
        with full_train_statistics(trainer.model, trainer.x_train, trainer.precision) if exact \
                else contextlib.nullcontext():
            loss, acc = evaluate(trainer.model, x, y, trainer.batch_size, trainer.precision,
                                 batch_statistics=self.batch_statistics, loss=trainer.optim.loss)
        loss_name, acc_name = self.names
        return [(None, loss_name, loss), (None, acc_name, acc)]


@dataclass(frozen=True)
class Probe:
    """The probe (``bnexp.probe``) of the fixed probe batch in train mode (batch statistics, as every paper
    measures; buffers restored). With ``probe.every = k`` the log points measure it only at steps that are
    multiples of k (step 0 always): per-layer rows of a 1000-layer net every epoch would be millions of rows."""

    spec: ProbeSpec
    when: str = LOG

    @property
    def names(self) -> tuple[str, ...]:
        spec = self.spec
        return (*spec.metrics, "loss", *(("grad_norm",) if spec.grad_norms else ()),
                *(("grad_alignment", "grad_cosine_full") if spec.alignment else ()),
                *(f"weight_{m}" for m in spec.weight_metrics))

    def __call__(self, trainer: Trainer) -> list[Item]:
        if self.when == LOG and trainer.at_step % self.spec.every:
            return []
        trainer.model.train()
        return probe(trainer.model, trainer.x_probe, trainer.y_probe, self.spec)


@dataclass(frozen=True)
class SetMetrics:
    """``probe.set_metrics`` (the ortho paper's training figures, spec ortho §1.8): each metric m of the
    representations of every training minibatch — the training set cut in order into chunks of ``data.batch_size``
    — averaged over the chunks, at step 0 and every log point (cadence ``EVERY``). Rows ``set_<m>``: layer = depth
    for the output logits (the paper's "representation in the last layer", its code's ``compute_orthogonality_gap``
    with m = ortho_gap_spectral), layer = depth − 1 for the last hidden layer's output. The model's own mode (train:
    batch statistics, as the code, which calls neither eval() nor no_grad) with dropout off; buffers restored."""

    spec: ProbeSpec
    when: str = EVERY

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"set_{m}" for m in self.spec.set_metrics)

    def __call__(self, trainer: Trainer) -> list[Item]:
        model, x = trainer.model, trainer.x_train
        names = self.spec.set_metrics
        sums: dict[tuple[int, str], Tensor] = {}
        bounds = chunks(len(x), trainer.batch_size, merge_single=True)
        was_training = model.training
        model.train()
        with torch.no_grad(), preserved_buffers(model), dropout_off(model), autocast(x.device, trainer.precision):
            for start, stop in bounds:
                logits, features = model.forward_features(layout(x[start:stop], trainer.precision))
                last = len(features)
                for layer, h in ((last, logits), (last - 1, features[-1]["post"])):
                    for name, value in metrics.measure(h.flatten(1).to(torch.float64), names).items():
                        sums[(layer, name)] = sums.get((layer, name), 0) + value
        model.train(was_training)
        return [(layer, f"set_{name}", total / len(bounds)) for (layer, name), total in sorted(
            sums.items(), key=lambda item: (-item[0][0], item[0][1]))]


class WeightRanks:
    """The low-rank paper's weight metrics (``probe.weight_ranks``; spec M1, M2, M4, M7), at step 0 and every
    log point (cadence ``EVERY``: one object, which keeps W_0's norms and the previous log point's weights).

    For the weight matrices W_k of ``model.weight_layers()`` (k = 0 … K−1, the readout last), with their singular
    values from one batched SVD per shape (:func:`bnexp.metrics.weights.weight_spectra`, float64):

    * ``weight_rank`` (layer k): #{σ_i(W_k/‖W_k‖_F) > ε}, ε = ``probe.rank_eps``; 0 where ‖W_k‖_F ≤
      ``probe.zero_rtol``·‖W_k at step 0‖_F; nan where W_k has a non-finite entry (never decomposed) and at
      the log point where the run is found diverged (spec §A.20: a diverged run's rank is nan, whether its
      weights or only its loss went non-finite);
    * ``weight_fro`` (layer k): ‖W_k‖_F = sqrt(Σσ_i²);
    * ``avg_rank``: the mean weight_rank over k < K−1 (every matrix but the readout), over all K with
      ``probe.rank_include_output``;
    * ``mean_weight_norm``: (1/K) Σ_k ‖W_k‖_F;
    * ``weight_distance``: (1/K) Σ_k ‖W_k − W_k at the previous log point‖_F (not at step 0); with
      ``probe.dist_normalize`` each term divided by ‖W_k at the previous log point‖_F (spec M3's option);
    * ``diverged``: 1.0 from the first log point at which a parameter or the running training loss is
      non-finite on (sticky), else 0.0. The trainer stops the run at that log point (``Trainer.stopped``).

    Its state (‖W_0‖_F, the previous weights, the divergence flag) is part of the trainer's checkpoint.
    """

    when = EVERY

    def __init__(self, spec: ProbeSpec):
        self.eps, self.zero_rtol = spec.rank_eps, spec.zero_rtol
        self.include_output, self.keep_spectra = spec.rank_include_output, spec.spectra
        self.dist_normalize = spec.dist_normalize
        self.fro0: Tensor | None = None  # ‖W_k‖_F at step 0, (K,)
        self.previous: list[Tensor] | None = None  # the weights at the previous log point
        self.diverged: Tensor | None = None  # 0-d bool, sticky

    @property
    def names(self) -> tuple[str, ...]:
        return ("weight_rank", "weight_fro", "avg_rank", "mean_weight_norm", "weight_distance", "diverged")

    def __call__(self, trainer: Trainer) -> list[Item]:
        weights = [m.weight.detach() for m in trainer.model.weight_layers()]
        spectra = weight_spectra(weights)
        fro = torch.stack([frobenius(sv) for sv in spectra])  # (K,)
        if self.fro0 is None:  # step 0
            self.fro0 = fro.clone()
        ranks = torch.stack([weight_rank(sv, f0, self.eps, self.zero_rtol) for sv, f0 in zip(spectra, self.fro0)])
        now = torch.stack([~torch.isfinite(p.detach()).all() for p in trainer.model.parameters()]).any()
        now = now | ~torch.isfinite(trainer.loss_sum)
        self.diverged = now if self.diverged is None else self.diverged.to(now.device) | now
        ranks = torch.where(self.diverged.to(ranks.device), torch.nan, ranks)  # spec: a diverged run's rank is nan
        hidden = ranks if self.include_output or len(ranks) == 1 else ranks[:-1]
        items: list[Item] = [(k, "weight_rank", r) for k, r in enumerate(ranks)]
        items += [(k, "weight_fro", f) for k, f in enumerate(fro)]
        items += [(None, "avg_rank", hidden.mean()), (None, "mean_weight_norm", fro.mean())]
        if self.previous is not None:
            distance = torch.stack([torch.linalg.matrix_norm(w.to(torch.float64) - p.to(torch.float64))
                                    for w, p in zip(weights, self.previous)])
            if self.dist_normalize:  # the reference code's later runs: each term relative to ‖W_prev‖_F
                distance = distance / torch.stack([torch.linalg.matrix_norm(p.to(torch.float64))
                                                   for p in self.previous])
            items.append((None, "weight_distance", distance.mean()))
        items.append((None, "diverged", self.diverged.to(torch.float64)))
        self.previous = [w.clone() for w in weights]
        sink = getattr(trainer, "spectra_sink", None)
        if self.keep_spectra and sink is not None:
            sink(trainer.seed, trainer.at_step, [sv.cpu().numpy() for sv in spectra])
        return items

    def state_dict(self) -> dict:
        return {"fro0": None if self.fro0 is None else self.fro0.cpu(),
                "previous": None if self.previous is None else [w.cpu() for w in self.previous],
                "diverged": None if self.diverged is None else self.diverged.cpu()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.fro0 = None if state["fro0"] is None else state["fro0"].to(device)
        self.previous = None if state["previous"] is None else [w.to(device) for w in state["previous"]]
        self.diverged = None if state["diverged"] is None else state["diverged"].to(device)


def default_measurements(spec: ProbeSpec) -> tuple[Measurement, ...]:
    """The measurements of ``bnexp train`` (module docstring), in the order of their rows."""
    start = (Probe(spec, START), SetPass("train", START, batch_statistics=True),
             SetPass("test", START, batch_statistics=True))
    log = (RunningMeans(), SetPass("test"), Probe(spec))
    if spec.train_pass:
        start += (SetPass("train", START, batch_statistics=True, name="train_full"),)
        log += (SetPass("train", name="train_full"),)
    sets = (SetMetrics(spec),) if spec.set_metrics else ()
    return start + log + sets + ((WeightRanks(spec),) if spec.weight_ranks else ())

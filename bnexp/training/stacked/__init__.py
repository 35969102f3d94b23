"""Replicate-stacked SGD: R small networks of one architecture trained as one model (low-rank figures).

The low-rank paper's figures are grids of small networks (18–24 runs, up to 6.25 M SGD steps each at B = 4);
one model at a time is bound by per-operation overhead. Runs that share the architecture, the batch size and
the step schedule (epochs, milestones, γ, μ) but differ in learning rate, weight decay and seed train here as
one stacked model:

* :mod:`~bnexp.training.stacked.flat` — the replicates' parameters (BN running statistics) as one ``(R, P)``
  (``(R, S)``) tensor, named views of it, and the copy back into each replicate's module;
* :mod:`~bnexp.training.stacked.forward` — the train-mode forward as batched matmuls over R (``MLP`` in every
  order, ``ResBlockMLP``; norms ``bn_torch``, ``none``), BN statistics per replicate;
* :mod:`~bnexp.training.stacked.sgd` — :class:`StackedSGD`: per-replicate η_r, λ_r, momentum buffer, schedule
  factor, divergence flags (a non-finite replicate is frozen, the others go on), state dict, ``models()``;
* :mod:`~bnexp.training.stacked.batches` — :class:`StackedBatches`: each replicate's own index stream
  (the per-run trainer's draws), ``(R, b)`` per step.

Use::

    models = [make_model(cfg, d_in, k, seed) for seed in seeds]           # as the per-run path builds them
    sgd = StackedSGD(models, x_train, y_train, lrs=[...], weight_decays=[...], momentum=0.9,
                     milestones=[60, 100, 200], gamma=0.1, steps_per_epoch=S)
    batches = StackedBatches(len(x_train), B, shuffle_generators(seeds), x_train.device)
    for epoch in range(E):
        for idx in batches.epoch():
            losses, correct = sgd.step(idx)                                 # (R,), (R,) on the device
        for r, model in enumerate(sgd.models()):                            # per-model measurements
            ...                                                             # sgd.diverged[r]: frozen

Exactness (``tests/test_stacked_training.py``, CPU float64): after several epochs the parameters and running
statistics equal those of a plain per-replicate loop (``torch.optim.SGD`` + the same schedule and index
streams) within 1e-10, for MLP-BN, MLP and RES-BN, with and without a diverging replicate.

Speed (``make bench-lowrank``, ``scripts/bench_lowrank.py``; see docs/performance.md for the full table):
replicate-steps per second, stacked against a plain loop of R modules each with its own ``torch.optim.SGD``,
MLP-BN-5-64, 784 inputs, R = 12, float32 — numbers below.

MEASURED
"""

from bnexp.training.stacked.batches import StackedBatches, shuffle_generators
from bnexp.training.stacked.flat import FlatLayout
from bnexp.training.stacked.forward import stacked_forward
from bnexp.training.stacked.sgd import StackedSGD

__all__ = ["FlatLayout", "StackedBatches", "StackedSGD", "shuffle_generators", "stacked_forward"]

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

Speed (``make bench-lowrank``, ``scripts/bench_lowrank.py``; docs/performance.md): replicate-steps per second,
stacked against a plain loop of R modules each with its own ``torch.optim.SGD``, MLP-BN-5-64, 784 inputs,
R = 12, float32, this 2-core VM (2026-12-06, best of 3)::

    threads    B    loop   vmap(functional_call)   stacked   stacked / loop
       1       8     930          2336               4058        4.4×
       1     128     555           759               1117        2.0×
       2       8     840          2894               4463        5.3×
       2     128     586          1247               1714        2.9×

What made the difference, measured at B = 8 on 1 thread: batched matmuls instead of ``vmap(functional_call)``
(2.5× → 2.9×); then, measured together, linear and BN as autograd Functions that write the parameter gradients
straight into one ``(R, P)`` buffer (no per-parameter gradient tensors, transposed copies or final ``cat``) and
the update row by row on the CPU, each replicate's row staying in cache through its three passes (→ 4.3×). Tried
and not kept: torch's ``native_batch_norm`` kernels on a ``(B, R·C)`` layout (no faster than the written-out
BN), ``torch.compile`` of the update (slower here), column-chunked updates (slower than rows).
"""

from bnexp.training.stacked.batches import StackedBatches, shuffle_generators
from bnexp.training.stacked.flat import FlatLayout
from bnexp.training.stacked.forward import stacked_forward
from bnexp.training.stacked.sgd import StackedSGD

__all__ = ["FlatLayout", "StackedBatches", "StackedSGD", "shuffle_generators", "stacked_forward"]

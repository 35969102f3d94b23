"""Measuring a network on a fixed probe batch: per-layer representation metrics, gradient norms, alignment.

One assembly over a replicate dimension serves both ways of probing, so every metric exists in both:

* ``spec.py``: ``ProbeSpec``, the validated ``probe:`` config, and ``layer_indices``;
* ``assemble.py``: ``ProbeTensors`` (raw tensors with a leading replicate dimension R) → the items of every
  replicate, in one order (``assemble``), and ``values_to_rows``;
* ``gradients.py``: gradient norms in float64, per-sample gradient cosines through the batch graph;
* ``single.py``: ``probe``, one model (R = 1), buffers restored, dropout off;
* ``stacked.py``: ``probe_stacked``, R per-seed models stacked under ``torch.func.vmap``; ``StackBuilder``,
  ``seeds_per_pass``, ``check_batch_seeds``.

The metrics (``grad_norm`` per weight layer, representation metrics per hidden layer, ``loss``, the alignment
``grad_alignment`` / ``grad_cosine_full``, ``weight_<metric>``) are defined in :mod:`bnexp.probe.assemble`
and :mod:`bnexp.probe.gradients`.
"""

from bnexp.probe.assemble import WHOLE_NETWORK, Item, ProbeTensors, assemble, values_to_rows, weight_matrix
from bnexp.probe.gradients import grad_norms, per_sample_cosine
from bnexp.probe.single import dropout_off, preserved_buffers, probe, representations
from bnexp.probe.spec import POINTS, ProbeSpec, layer_indices
from bnexp.probe.stacked import (
    BATCH_SEEDS,
    MEMORY_BUDGET,
    Stack,
    StackBuilder,
    check_batch_seeds,
    probe_stacked,
    seeds_per_pass,
    stack,
)

__all__ = [
    "BATCH_SEEDS",
    "MEMORY_BUDGET",
    "POINTS",
    "WHOLE_NETWORK",
    "Item",
    "ProbeSpec",
    "ProbeTensors",
    "Stack",
    "StackBuilder",
    "assemble",
    "check_batch_seeds",
    "dropout_off",
    "grad_norms",
    "layer_indices",
    "per_sample_cosine",
    "preserved_buffers",
    "probe",
    "probe_stacked",
    "representations",
    "seeds_per_pass",
    "stack",
    "values_to_rows",
    "weight_matrix",
]

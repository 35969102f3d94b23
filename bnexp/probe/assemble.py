"""The one assembly of a probe's items from tensors with a leading replicate dimension R.

Both ways of probing — one model (:func:`bnexp.probe.probe`, R = 1) and R models stacked under
``torch.func.vmap`` (:func:`bnexp.probe.probe_stacked`) — run their forward and backward passes, collect the
raw tensors in :class:`ProbeTensors` and hand them to :func:`assemble`, so every metric exists in both and
comes out in the same order. Items per replicate, in this order:

1. with ``probe.input``: ``probe.metrics`` of the flattened input batch, layer −1;
2. per hidden layer ℓ in ``probe.layers``: ``probe.metrics`` of representation ``probe.point``;
3. ``(None, "loss", ·)``, the mean loss of the batch (``ProbeSpec.loss``: cross-entropy, or the squared error to
   one-hot targets of ``optim.loss=mse``);
4. with ``probe.grad_norms``: ``(k, "grad_norm", ·)`` per weight layer k of ``model.weight_layers()``;
5. with ``probe.alignment`` (rank paper Fig. 10, spec §0.4), whole-network rows on the first m samples:
   ``grad_alignment`` = A_last = mean_{i<j} |cos(h_{L,i}, h_{L,j})|, h_L the input of the readout (the last
   weight layer). It equals the per-neuron alignment of the per-sample readout gradients, mean_k mean_{i<j}
   |cos(∇_{W[k,:]} ℓ_i, ∇_{W[k,:]} ℓ_j)|, because ∇_{W[k,:]} ℓ_i = (∂ℓ_i/∂z_{ik}) h_{L,i} (rank Prop. 19);
   rank one gives exactly 1. ``grad_cosine_full``: :mod:`bnexp.probe.gradients`;
6. with ``probe.weight_metrics`` (and ``weights``): ``(k, "weight_<metric>", ·)``, each W_k (out, in) — a conv
   kernel flattened to (out, in·k_h·k_w) — measured as a (rows, columns) matrix, so ``weight_isometry_gap`` is
   φ(W_k) = ln(AM/GM of the eigenvalues of W_k W_kᵀ) (+inf when out > in) and ``weight_rank_np`` the float64
   numerical rank of W_k.

Representation metrics are batched: tensors of equal shape are stacked into one ``(L, R, n, d)`` tensor and
measured in one ``metrics.measure`` call. Values stay on the device as 0-d float64 tensors; the caller moves
them to the host once (:func:`values_to_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bnexp import metrics
from bnexp.probe.spec import ProbeSpec

__all__ = ["WHOLE_NETWORK", "Item", "ProbeTensors", "assemble", "stacked_items", "values_to_rows",
           "weight_matrix"]

# (layer or None for whole-network, metric name, 0-d float64 tensor on the model's device)
Item = tuple["int | None", str, Tensor]

# Metrics of the whole network or of every weight layer that are not ``metrics.MEASURES`` of a representation.
WHOLE_NETWORK = ("loss", "grad_norm", "grad_alignment", "grad_cosine_full")

LAYER_CHUNK = 128  # stacked_items measures at most this many layers of one shape per call (bounds the copy)


@dataclass
class ProbeTensors:
    """A probe's raw tensors, each with a leading replicate dimension R (R = 1 for one model)."""

    reps: list[tuple[int, Tensor]]  # (ℓ, h_ℓ (R, n, d)) for the chosen hidden layers, ordered by ℓ
    loss: Tensor  # (R,) mean loss (ProbeSpec.loss)
    inputs: Tensor | None = None  # (R, n, d_in): the flattened probe batch (probe.input)
    grad_norms: Tensor | None = None  # (R, K) float64
    readout_input: Tensor | None = None  # (R, m, d): h_L of the first m samples (probe.alignment)
    grad_cosine: Tensor | None = None  # (R,) float64 grad_cosine_full (probe.alignment)
    weights: list[Tensor] | None = None  # the K weights (R, out, ...) (probe.weight_metrics)

    @property
    def size(self) -> int:
        return self.loss.shape[0]


def weight_matrix(w: Tensor, batch_dims: int = 0) -> Tensor:
    """A weight as the matrix ``probe.weight_metrics`` measure: (out, in), a conv kernel (out, in·k_h·k_w);
    ``batch_dims`` leading replicate dimensions are kept."""
    return w.detach().flatten(batch_dims + 1)


def stacked_items(
    entries: Sequence[tuple[int, Tensor]], names: Sequence[str], *, tau: float = 0.5, k: int = 10,
    tol: float = 1e-9, prefix: str = "", replicates: int | None = None,
) -> list[list[Item]]:
    """``metrics.measure`` of each ``(ℓ, h_ℓ)`` with ``h_ℓ`` of shape ``(R, n, d)`` (R replicates).

    Returns, per replicate r, the items ``(ℓ, prefix + metric, value)`` ordered by ℓ (metric order kept within
    a layer). Entries of equal shape are stacked into ``(L, R, n, d)`` tensors, at most ``LAYER_CHUNK`` layers
    per ``measure`` call: one call per shape and chunk, not a Python loop over layers or replicates.
    ``top_eigenvalues`` gives metrics ``eig_1`` … ``eig_k`` and ``regularity_terms`` gives ``regularity_num``
    and ``regularity_den`` (see ``metrics.measure``).
    """
    if replicates is None:
        replicates = entries[0][1].shape[0] if entries else 0
    if not entries or not names:
        return [[] for _ in range(replicates)]
    groups: dict[tuple[int, ...], list[tuple[int, Tensor]]] = {}
    for layer, h in entries:
        groups.setdefault(tuple(h.shape), []).append((layer, h))
    items: list[list[Item]] = [[] for _ in range(replicates)]
    for group in groups.values():
        for start in range(0, len(group), LAYER_CHUNK):
            chunk = group[start : start + LAYER_CHUNK]
            stacked = torch.stack([h.detach() for _, h in chunk])  # (L, R, n, d)
            values = metrics.measure(stacked, names, tau=tau, k=k, tol=tol)  # metric → (L, R) float64
            for i, (layer, _) in enumerate(chunk):
                for r in range(replicates):
                    items[r].extend((layer, prefix + name, value[i, r]) for name, value in values.items())
    return [sorted(per, key=lambda item: item[0]) for per in items]


def assemble(t: ProbeTensors, spec: ProbeSpec) -> list[list[Item]]:
    """Per replicate r, the items of the module docstring, in its order, from ``t``'s slices r."""
    size, opts = t.size, spec.options
    items: list[list[Item]] = [[] for _ in range(size)]

    def extend(found: list[list[Item]]) -> None:
        for r in range(size):
            items[r] += found[r]

    if spec.input and t.inputs is not None:
        extend(stacked_items([(-1, t.inputs)], spec.metrics, replicates=size, **opts))
    extend(stacked_items(t.reps, spec.metrics, replicates=size, **opts))
    loss = t.loss.detach().to(torch.float64)
    aligned = None
    if t.readout_input is not None and t.grad_cosine is not None:
        aligned = metrics.mean_abs_cosine(t.readout_input.detach().flatten(2))  # (R,)
    for r in range(size):
        items[r].append((None, "loss", loss[r]))
        if t.grad_norms is not None:
            items[r].extend((k, "grad_norm", norm) for k, norm in enumerate(t.grad_norms[r]))
        if aligned is not None:
            items[r] += [(None, "grad_alignment", aligned[r]), (None, "grad_cosine_full", t.grad_cosine[r])]
    if t.weights is not None and spec.weight_metrics:
        entries = [(k, weight_matrix(w, 1)) for k, w in enumerate(t.weights)]
        extend(stacked_items(entries, spec.weight_metrics, prefix="weight_", replicates=size, **opts))
    return items


def values_to_rows(items: Sequence[Item], seed: int, step: int) -> list[tuple[int, int, int | None, str, float]]:
    """CSV rows ``(seed, step, layer, metric, value)`` of items; one device → host transfer for all."""
    if not items:
        return []
    values = torch.stack([v.detach().to(torch.float64).reshape(()) for _, _, v in items]).cpu().tolist()
    return [(seed, step, layer, name, value) for (layer, name, _), value in zip(items, values)]

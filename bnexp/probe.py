"""Measuring a network on a fixed probe batch: per-layer representation metrics and gradient norms.

A probe is one forward pass of the probe batch in the model's *current* mode (train mode: batch
statistics, as every paper measures), then

* representation metrics (``bnexp.metrics.measure``) of hidden layers ``ℓ`` at one point of the layer
  (``pre``: the linear output, ``norm``: after the norm, ``post``: the layer output — see each model's
  ``forward_features``), batched: layers of equal shape are stacked into one ``(L, n, d)`` tensor and
  measured in one call;
* the mean cross-entropy ``loss`` of the batch, and
* ``grad_norm``: ‖∂loss/∂W_k‖_F for every weight layer k of ``model.weight_layers()`` (MLP: k = ℓ is fc_ℓ,
  the Linear feeding hidden layer ℓ, so fc_0 is k = 0 and the readout is k = depth), accumulated in
  float64 so that a float32 gradient whose squared norm exceeds float32's range is still finite;
* optionally (``probe.input``) the same representation metrics of the flattened input batch, as layer −1;
* optionally (``probe.weight_metrics``) metrics of the weight matrices themselves, ``weight_<metric>`` with
  layer = k: each W_k (out, in) (a conv kernel flattened to (out, in·k_h·k_w)) is measured as a (rows,
  columns) matrix, so e.g. ``weight_isometry_gap`` is φ(W_k) = ln(AM/GM of the eigenvalues of W_k W_kᵀ)
  (+inf when out > in: W_k W_kᵀ is singular) and ``weight_rank_np`` the float64 numerical rank of W_k;
* optionally (``probe.alignment``) the directional gradient alignment of the rank paper (000 Fig 10,
  spec §0.4), whole-network rows (layer empty) on the first m = ``probe.alignment_samples`` samples of the
  probe batch (all of them when the batch is smaller):

  - ``grad_alignment`` = A_last = mean_{i<j} |cos(h_{L,i}, h_{L,j})|, h_L the input of the readout (the last
    of ``model.weight_layers()``, captured by a forward pre-hook in the probe's own forward pass). It equals
    the per-neuron alignment of the per-sample readout gradients, mean_k mean_{i<j}
    |cos(∇_{W[k,:]} ℓ_i, ∇_{W[k,:]} ℓ_j)|, because ∇_{W[k,:]} ℓ_i = (∂ℓ_i/∂z_{ik}) h_{L,i} (rank Prop 19);
    rank one gives exactly 1.
  - ``grad_cosine_full`` = mean_{i<j} cos(∇_θ ℓ_i, ∇_θ ℓ_j) (signed) over all parameters θ (weights, biases,
    norm affine parameters), with ℓ_i the cross-entropy of sample i *in the probe's batch forward pass*: in
    train mode every BN layer normalises with the statistics of the whole probe batch, and ∇_θ ℓ_i is the
    gradient of that one term through them (the batch gradient is the mean of these). A per-sample gradient
    of a BN network is otherwise undefined — a sample normalised alone is constant. Computed by m backward
    passes through the one graph (``retain_graph``); the Gram matrix of the per-sample gradients is
    accumulated per parameter in float64 (``metrics.gram_mean_cosine``). Memory: m copies of the
    parameters' gradients (VGG19, m = 32, float32: 2.5 GB).

Every measurement function also takes a leading replicate dimension (``bnexp.batched`` probes many seeds
in one vmapped pass with the same code).

Measuring never changes the model: buffers (BN running statistics, ``num_batches_tracked``) are saved
before the forward pass and restored after it, and gradients are taken with ``torch.autograd.grad``, so
parameters' ``.grad`` stay untouched. Values stay on the device as 0-d float64 tensors; the caller moves
them to the host once (``values_to_rows``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor, nn

from bnexp import metrics
from bnexp.errors import ConfigError, check_bool, check_int, check_number

__all__ = [
    "POINTS",
    "ProbeSpec",
    "grad_norms",
    "layer_indices",
    "layer_metrics",
    "per_sample_gradient_cosine",
    "preserved_buffers",
    "probe",
    "representations",
    "stacked_items",
    "values_to_rows",
    "weight_matrix",
]

POINTS = ("pre", "norm", "post")

# (layer or None for whole-network, metric name, 0-d float64 tensor on the model's device)
Item = tuple["int | None", str, Tensor]


# ------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class ProbeSpec:
    """What a probe measures (config section ``probe``)."""

    metrics: tuple[str, ...] = ("rank_torch", "soft_rank", "rank_lower_bound")
    point: str = "post"
    layers: str | tuple[int, ...] = "all"
    grad_norms: bool = True
    tau: float = 0.5
    top_k: int = 10
    rank_tol: float = 1e-9
    batches: int = 1  # at optim.epochs = 0: this many consecutive probe batches, step = batch index
    input: bool = False  # also the metrics of the flattened input batch, layer = -1
    weight_metrics: tuple[str, ...] = ()  # metrics of every weight matrix W_k, as weight_<metric>, layer = k
    alignment: bool = False  # grad_alignment (A_last) and grad_cosine_full, whole-network rows
    alignment_samples: int = 32  # the first m samples of the probe batch that the alignment uses

    @classmethod
    def from_cfg(cls, cfg: DictConfig, depth: int) -> ProbeSpec:
        """Validate ``probe.*`` for a network of ``depth`` hidden layers; raise ConfigError naming the key."""
        names = cfg.get("metrics")
        if not isinstance(names, (list, tuple, ListConfig)):
            raise ConfigError("probe.metrics", names, "a list of metric names, e.g. [rank_torch]")
        for name in names:
            if name not in metrics.MEASURES:
                raise ConfigError("probe.metrics", name, metrics.MEASURES)
        if cfg.get("point") not in POINTS:
            raise ConfigError("probe.point", cfg.get("point"), POINTS)
        layers = cfg.get("layers")
        if isinstance(layers, (list, tuple, ListConfig)):
            layers = tuple(OmegaConf.to_container(layers) if isinstance(layers, ListConfig) else layers)
        layer_indices(layers, depth)
        tau = cfg.get("tau")
        check_number("probe.tau", tau, 0.0, 1.0)
        top_k = check_int("probe.top_k", cfg.get("top_k"), 1)
        tol = check_number("probe.rank_tol", cfg.get("rank_tol"), 0.0, open_lo=True)
        check_bool("probe.grad_norms", cfg.get("grad_norms"))
        batches = check_int("probe.batches", cfg.get("batches", 1), 1)
        check_bool("probe.input", cfg.get("input", False))
        weight_names = cfg.get("weight_metrics", [])
        if not isinstance(weight_names, (list, tuple, ListConfig)):
            raise ConfigError("probe.weight_metrics", weight_names, "a list of metric names, e.g. [isometry_gap]")
        for name in weight_names:
            if name not in metrics.MEASURES:
                raise ConfigError("probe.weight_metrics", name, metrics.MEASURES)
        alignment = check_bool("probe.alignment", cfg.get("alignment", False))
        samples = check_int("probe.alignment_samples", cfg.get("alignment_samples", 32), 2)
        return cls(metrics=tuple(names), point=cfg.point, layers=layers, grad_norms=cfg.grad_norms, tau=float(tau),
                   top_k=int(top_k), rank_tol=float(tol), batches=int(batches), input=bool(cfg.get("input", False)),
                   weight_metrics=tuple(weight_names), alignment=alignment, alignment_samples=samples)


def layer_indices(layers: str | Sequence[int], depth: int) -> list[int]:
    """Hidden-layer indices named by ``probe.layers``: ``all``, ``last`` or a list of indices in [0, depth)."""
    if layers == "all":
        return list(range(depth))
    if layers == "last":
        return [depth - 1]
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError("probe.layers", layers, "all, last, or a non-empty list of hidden-layer indices")
    for index in layers:
        if not isinstance(index, Integral) or isinstance(index, bool) or not 0 <= index < depth:
            raise ConfigError("probe.layers", layers, f"indices must be integers in [0, {depth}) (depth)")
    return sorted(set(int(i) for i in layers))


# ------------------------------------------------------------------------------------------------ parts


@contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` (BN running mean/var/second moment, batch counters) on exit."""
    saved = [(buf, buf.detach().clone()) for buf in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


@contextmanager
def dropout_off(model: nn.Module) -> Iterator[None]:
    """Dropout layers in eval mode (identity) for the duration, every other module's mode untouched.

    The probe measures the network itself: with dropout active, each sample of the probe batch would get its own
    mask, so e.g. the readout inputs of a rank-collapsed VGG would look unaligned (measured: A_last 0.87 instead
    of 1.000000 for vanilla VGG19 at init). BN keeps batch statistics (train mode), as in every paper.
    """
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
    for m in dropouts:
        m.eval()
    try:
        yield
    finally:
        for m in dropouts:
            m.train()


def _select(features: list[dict[str, Tensor]], point: str, indices: Sequence[int]) -> list[tuple[int, Tensor]]:
    return [(l, features[l][point].detach()) for l in indices]


def representations(
    model: nn.Module, x: Tensor, point: str = "post", layers: str | Sequence[int] = "all"
) -> list[tuple[int, Tensor]]:
    """``[(ℓ, h_ℓ)]``: the ``point`` representation ``(n, d)`` of the chosen hidden layers for input ``x``.

    One ``forward_features`` pass in the model's current mode, without gradients; buffers are restored.
    """
    if point not in POINTS:
        raise ConfigError("probe.point", point, POINTS)
    with preserved_buffers(model), torch.no_grad():
        _, features = model.forward_features(x)
    return _select(features, point, layer_indices(layers, len(features)))


LAYER_CHUNK = 128  # stacked_items measures at most this many layers of one shape per call (bounds the copy)


def stacked_items(
    entries: Sequence[tuple[int, Tensor]], names: Sequence[str], *, tau: float = 0.5, k: int = 10,
    tol: float = 1e-9, prefix: str = "",
) -> list[list[Item]]:
    """``metrics.measure`` of each ``(ℓ, h_ℓ)`` with ``h_ℓ`` of shape ``(R, n, d)`` (R replicates).

    Returns, per replicate r, the items ``(ℓ, prefix + metric, value)`` ordered by ℓ (metric order kept within
    a layer). Entries of equal shape are stacked into ``(L, R, n, d)`` tensors, at most ``LAYER_CHUNK`` layers
    per ``measure`` call: one call per shape and chunk, not a Python loop over layers or replicates.
    """
    if not entries or not names:
        return [[] for _ in range(entries[0][1].shape[0] if entries else 0)]
    replicates = entries[0][1].shape[0]
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


def layer_metrics(
    reps: Sequence[tuple[int, Tensor]], names: Sequence[str], *, tau: float = 0.5, k: int = 10,
    tol: float = 1e-9,
) -> list[Item]:
    """``metrics.measure`` of each ``(ℓ, h_ℓ)``, as items ``(ℓ, metric, value)`` ordered by ℓ.

    Representations of equal shape are stacked into one ``(L, n, d)`` tensor: one measure call per
    shape, not a Python loop over layers. ``top_eigenvalues`` gives metrics ``eig_1`` … ``eig_k`` and
    ``regularity_terms`` gives ``regularity_num`` and ``regularity_den`` (see ``metrics.measure``).
    """
    if not reps:
        return []
    return stacked_items([(layer, h[None]) for layer, h in reps], names, tau=tau, k=k, tol=tol)[0]


def weight_matrix(w: Tensor, batch_dims: int = 0) -> Tensor:
    """A weight as the matrix ``probe.weight_metrics`` measure: (out, in), a conv kernel (out, in·k_h·k_w);
    ``batch_dims`` leading replicate dimensions are kept."""
    return w.detach().flatten(batch_dims + 1)


def _frobenius64(g: Tensor, batch_dims: int = 0) -> Tensor:
    """‖g‖_F in float64, scaled by max|g| first so that not even float64 squares overflow.

    The first ``batch_dims`` dimensions are replicates: one norm each. An inf entry gives inf and a nan
    entry nan (never raises); a zero gradient gives 0.
    """
    g = g.detach().to(torch.float64)
    dims = tuple(range(batch_dims, g.dim()))
    peak = g.abs().amax(dim=dims, keepdim=True)
    scale = torch.where(torch.isfinite(peak) & (peak > 0), peak, torch.ones_like(peak))
    return scale.reshape(g.shape[:batch_dims]) * torch.linalg.vector_norm(g / scale, dim=dims)


def grad_norms(model: nn.Module, loss: Tensor, *, retain_graph: bool = False) -> Tensor:
    """‖∂loss/∂W_k‖_F (float64, shape (K,)) for the weights of ``model.weight_layers()``, in that order.

    Uses ``torch.autograd.grad``: the parameters' ``.grad`` are not touched. Biases are not included.
    ``retain_graph`` keeps the graph for a later backward (the probe's alignment).
    """
    weights = [module.weight for module in model.weight_layers()]
    return _norms_of(torch.autograd.grad(loss, weights, allow_unused=True, retain_graph=retain_graph), weights)


def _norms_of(grads: Sequence[Tensor | None], weights: Sequence[Tensor]) -> Tensor:
    return torch.stack([
        _frobenius64(g) if g is not None else torch.zeros((), dtype=torch.float64, device=w.device)
        for g, w in zip(grads, weights)
    ])


def per_sample_gradient_cosine(model: nn.Module, losses: Tensor) -> Tensor:
    """mean_{i<j} cos(∇_θ losses[i], ∇_θ losses[j]) over every parameter θ of ``model`` that needs a gradient.

    ``losses`` (m,) come from one forward pass (its graph is kept: one backward per sample, ``retain_graph``).
    The m × m Gram matrix of the per-sample gradients is accumulated parameter by parameter in float64, so
    no (m, #parameters) float64 matrix is ever formed. 0-d float64; nan if a per-sample gradient is zero.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) for loss in losses]
    m = len(grads)
    gram = torch.zeros((m, m), dtype=torch.float64, device=losses.device)
    for k, p in enumerate(params):
        if all(g[k] is None for g in grads):
            continue
        rows = torch.stack([(g[k] if g[k] is not None else torch.zeros_like(p)).reshape(-1) for g in grads])
        rows = rows.to(torch.float64)
        gram += rows @ rows.mT
    return metrics.gram_mean_cosine(gram)


def _alignment_items(model: nn.Module, readout_input: Tensor, losses: Tensor, m: int) -> list[Item]:
    """``grad_alignment`` and ``grad_cosine_full`` on the first m samples (module docstring)."""
    m = min(m, len(losses))
    aligned = metrics.mean_abs_cosine(readout_input[:m].detach().flatten(1))
    full = per_sample_gradient_cosine(model, losses[:m])
    return [(None, "grad_alignment", aligned), (None, "grad_cosine_full", full)]


# ------------------------------------------------------------------------------------------------ probe


def probe(model: nn.Module, x: Tensor, y: Tensor, spec: ProbeSpec, *, weights: bool = True) -> list[Item]:
    """One forward (and, with ``spec.grad_norms``, one backward) of ``(x, y)`` in the model's current mode.

    Items, in this order: with ``spec.input`` the ``spec.metrics`` of ``x.flatten(1)`` as layer −1; per hidden
    layer ℓ the ``spec.metrics`` of ``spec.point``; ``(None, "loss", ·)``, the mean cross-entropy; per weight
    layer k ``(k, "grad_norm", ·)``; with ``weights`` (default) and ``spec.weight_metrics``, per weight layer k
    ``(k, "weight_<metric>", ·)``; with ``spec.alignment``, ``(None, "grad_alignment", ·)`` and
    ``(None, "grad_cosine_full", ·)``. Dropout is off during the probe (:func:`dropout_off`); norms use batch
    statistics in train mode. The model is left exactly as it was.
    """
    opts = {"tau": spec.tau, "k": spec.top_k, "tol": spec.rank_tol}
    items: list[Item] = []
    if spec.input:
        items += stacked_items([(-1, x.flatten(1)[None])], spec.metrics, **opts)[0]
    captured: list[Tensor] = []
    hook = None
    if spec.alignment:
        hook = model.weight_layers()[-1].register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        with preserved_buffers(model), dropout_off(model), torch.set_grad_enabled(spec.grad_norms or spec.alignment):
            logits, features = model.forward_features(x)
            losses = F.cross_entropy(logits, y, reduction="none")
            loss = losses.mean()
            norms = grad_norms(model, loss, retain_graph=spec.alignment) if spec.grad_norms else None
            aligned = _alignment_items(model, captured[-1], losses, spec.alignment_samples) if spec.alignment else []
    finally:
        if hook is not None:
            hook.remove()
    reps = _select(features, spec.point, layer_indices(spec.layers, len(features)))
    items += layer_metrics(reps, spec.metrics, **opts)
    items.append((None, "loss", loss.detach().to(torch.float64)))
    if norms is not None:
        items.extend((k, "grad_norm", norm) for k, norm in enumerate(norms))
    items += aligned
    if weights and spec.weight_metrics:
        entries = [(k, weight_matrix(m.weight)[None]) for k, m in enumerate(model.weight_layers())]
        items += stacked_items(entries, spec.weight_metrics, prefix="weight_", **opts)[0]
    return items


def values_to_rows(items: Sequence[Item], seed: int, step: int) -> list[tuple[int, int, int | None, str, float]]:
    """CSV rows ``(seed, step, layer, metric, value)`` of items; one device → host transfer for all."""
    if not items:
        return []
    values = torch.stack([v.detach().to(torch.float64).reshape(()) for _, _, v in items]).cpu().tolist()
    return [(seed, step, layer, name, value) for (layer, name, _), value in zip(items, values)]

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
  float64 so that a float32 gradient whose squared norm exceeds float32's range is still finite.

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
from bnexp.errors import ConfigError, check_int, check_number

__all__ = [
    "POINTS",
    "ProbeSpec",
    "grad_norms",
    "layer_indices",
    "layer_metrics",
    "preserved_buffers",
    "probe",
    "representations",
    "values_to_rows",
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
        if not isinstance(cfg.get("grad_norms"), bool):
            raise ConfigError("probe.grad_norms", cfg.get("grad_norms"), (True, False))
        return cls(tuple(names), cfg.point, layers, cfg.grad_norms, float(tau), int(top_k), float(tol))


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


def layer_metrics(
    reps: Sequence[tuple[int, Tensor]], names: Sequence[str], *, tau: float = 0.5, k: int = 10,
    tol: float = 1e-9,
) -> list[Item]:
    """``metrics.measure`` of each ``(ℓ, h_ℓ)``, as items ``(ℓ, metric, value)`` ordered by ℓ.

    Representations of equal shape are stacked into one ``(L, n, d)`` tensor: one measure call per
    shape, not a Python loop over layers. ``top_eigenvalues`` gives metrics ``eig_1`` … ``eig_k`` and
    ``regularity_terms`` gives ``regularity_num`` and ``regularity_den`` (see ``metrics.measure``).
    """
    groups: dict[tuple[int, ...], list[tuple[int, Tensor]]] = {}
    for layer, h in reps:
        groups.setdefault(tuple(h.shape), []).append((layer, h))
    items: list[Item] = []
    for group in groups.values():
        stacked = torch.stack([h for _, h in group])  # (L, n, d)
        values = metrics.measure(stacked, names, tau=tau, k=k, tol=tol)  # metric → (L,) float64
        for i, (layer, _) in enumerate(group):
            items.extend((layer, name, value[i]) for name, value in values.items())
    return sorted(items, key=lambda item: item[0])  # stable: metric order kept within a layer


def _frobenius64(g: Tensor) -> Tensor:
    """‖g‖_F in float64, scaled by max|g| first so that not even float64 squares overflow.

    An inf entry gives inf and a nan entry nan (never raises); a zero gradient gives 0.
    """
    g = g.detach().to(torch.float64)
    peak = g.abs().amax()
    scale = torch.where(torch.isfinite(peak) & (peak > 0), peak, torch.ones_like(peak))
    return scale * torch.linalg.vector_norm(g / scale)


def grad_norms(model: nn.Module, loss: Tensor) -> Tensor:
    """‖∂loss/∂W_k‖_F (float64, shape (K,)) for the weights of ``model.weight_layers()``, in that order.

    Uses ``torch.autograd.grad``: the parameters' ``.grad`` are not touched. Biases are not included.
    """
    weights = [module.weight for module in model.weight_layers()]
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return torch.stack([
        _frobenius64(g) if g is not None else torch.zeros((), dtype=torch.float64, device=w.device)
        for g, w in zip(grads, weights)
    ])


# ------------------------------------------------------------------------------------------------ probe


def probe(model: nn.Module, x: Tensor, y: Tensor, spec: ProbeSpec) -> list[Item]:
    """One forward (and, with ``spec.grad_norms``, one backward) of ``(x, y)`` in the model's current mode.

    Items: per hidden layer ℓ the ``spec.metrics`` of ``spec.point``; ``(None, "loss", ·)``, the mean
    cross-entropy; and per weight layer k ``(k, "grad_norm", ·)``. The model is left exactly as it was.
    """
    with preserved_buffers(model), torch.set_grad_enabled(spec.grad_norms):
        logits, features = model.forward_features(x)
        loss = F.cross_entropy(logits, y)
        norms = grad_norms(model, loss) if spec.grad_norms else None
    reps = _select(features, spec.point, layer_indices(spec.layers, len(features)))
    items = layer_metrics(reps, spec.metrics, tau=spec.tau, k=spec.top_k, tol=spec.rank_tol)
    items.append((None, "loss", loss.detach().to(torch.float64)))
    if norms is not None:
        items.extend((k, "grad_norm", norm) for k, norm in enumerate(norms))
    return items


def values_to_rows(items: Sequence[Item], seed: int, step: int) -> list[tuple[int, int, int | None, str, float]]:
    """CSV rows ``(seed, step, layer, metric, value)`` of items; one device → host transfer for all."""
    if not items:
        return []
    values = torch.stack([v.detach().to(torch.float64).reshape(()) for _, _, v in items]).cpu().tolist()
    return [(seed, step, layer, name, value) for (layer, name, _), value in zip(items, values)]

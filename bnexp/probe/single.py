"""Probing one network: its forward and backward passes on the probe batch, assembled as one replicate.

A probe is one forward pass of the probe batch in the model's *current* mode (train mode: batch statistics,
as every paper measures) with dropout off, and, for ``probe.grad_norms`` / ``probe.alignment``, backward
passes through that one graph; the tensors go to :func:`bnexp.probe.assemble.assemble` with R = 1.

Measuring never changes the model: buffers (BN running statistics, ``num_batches_tracked``) are saved before
the forward pass and restored after it, and gradients are taken with ``torch.autograd.grad``, so parameters'
``.grad`` stay untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError
from bnexp.probe.assemble import Item, ProbeTensors, assemble
from bnexp.probe.gradients import grad_norms, per_sample_cosine, sample_losses
from bnexp.probe.spec import POINTS, ProbeSpec, layer_indices

__all__ = ["dropout_off", "preserved_buffers", "probe", "readout_inputs", "representations"]


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


@contextmanager
def readout_inputs(model: nn.Module, active: bool) -> Iterator[list[Tensor]]:
    """While ``active``, every input h_L of the readout (the last of ``model.weight_layers()``) is appended to
    the yielded list (a forward pre-hook; under ``vmap`` the hook sees the per-replicate tensor)."""
    captured: list[Tensor] = []
    hook = model.weight_layers()[-1].register_forward_pre_hook(lambda _, args: captured.append(args[0])) \
        if active else None
    try:
        yield captured
    finally:
        if hook is not None:
            hook.remove()


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
    return [(layer, features[layer][point].detach()) for layer in layer_indices(layers, len(features))]


def probe(model: nn.Module, x: Tensor, y: Tensor, spec: ProbeSpec, *, weights: bool = True) -> list[Item]:
    """One forward (and, with ``spec.grad_norms`` or ``spec.alignment``, backward passes) of ``(x, y)`` in the
    model's current mode: the items of :mod:`bnexp.probe.assemble`, weight metrics only with ``weights``.
    Dropout is off during the probe (:func:`dropout_off`); norms use batch statistics in train mode. The model is
    left exactly as it was."""
    needs_graph = spec.grad_norms or spec.alignment
    with (readout_inputs(model, spec.alignment) as captured, preserved_buffers(model), dropout_off(model),
          torch.set_grad_enabled(needs_graph)):
        logits, features = model.forward_features(x)
        losses = sample_losses(logits, y, spec.loss)
        loss = losses.mean()
        norms = grad_norms(model, loss, retain_graph=spec.alignment) if spec.grad_norms else None
        readout = cosine = None
        if spec.alignment:
            m = min(spec.alignment_samples, len(losses))
            params = [p for p in model.parameters() if p.requires_grad]
            cosine = per_sample_cosine(losses[None, :m], params, stacked=False)
            readout = captured[-1][:m].detach().flatten(1)[None]
    tensors = ProbeTensors(
        reps=[(layer, features[layer][spec.point].detach()[None])
              for layer in layer_indices(spec.layers, len(features))],
        loss=loss.detach()[None],
        inputs=x.flatten(1)[None] if spec.input else None,
        grad_norms=norms[None] if norms is not None else None,
        readout_input=readout, grad_cosine=cosine,
        weights=[m.weight.detach()[None] for m in model.weight_layers()] if weights else None,
    )
    return assemble(tensors, spec)[0]

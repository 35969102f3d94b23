"""``bnexp.measure(model, batch, ...)``: the probe's per-layer metrics of any ``nn.Module``, as a tidy DataFrame.

::

    import bnexp, torch, torchvision
    net = torchvision.models.resnet18()
    df = bnexp.measure(net, torch.randn(16, 3, 32, 32), metrics=["soft_rank"],
                       modules=["layer1", "layer2", "layer3", "layer4"])

It is the probe of every figure, not a second measuring path: the model is wrapped in
:class:`bnexp.nn.hooked.Hooked` (forward hooks on the chosen modules; each representation flattened per sample, so
a conv map ``(n, C, H, W)`` is measured as the ``(n, C·H·W)`` matrix, as the rank paper measures VGG's features),
the metrics are :data:`bnexp.metrics.MEASURES` (float64, except where a metric is defined by its precision) with a
:class:`~bnexp.probe.ProbeSpec`'s options, and the rows come from :mod:`bnexp.probe`: with labels (``batch=(x, y)``
or ``y=``) :func:`bnexp.probe.probe` itself (one forward; for ``grad_norms`` one backward of the mean loss, and a
``loss`` row), without labels the same forward through :func:`bnexp.probe.representations` and the probe's own
assembly (:func:`bnexp.probe.assemble.stacked_items`).

Rows, one per (layer, metric), columns ``seed, step, layer, module, metric, value`` (``seed``/``step`` as in
``metrics.csv``, given by the caller, so frames join with runs):

* the ``metrics`` of each hooked call: ``layer`` = its index in forward order, ``module`` = its qualified name in
  ``model`` (``name#2`` for the second call of a module called twice); ``top_eigenvalues`` gives ``eig_1`` …,
  ``regularity_terms`` ``regularity_num``/``regularity_den``;
* with labels, ``loss`` (the batch's mean cross-entropy, or ``loss="mse"``): ``layer`` and ``module`` empty;
* with ``grad_norms=True``: ``grad_norm`` = ‖∂loss/∂W_k‖_F (float64) of every module with a ≥ 2-D weight,
  ``layer`` = k in ``model.modules()`` order, ``module`` = its name.

The model is measured as it is: in its current mode (train mode: batch statistics, as the papers measure; eval
mode: running statistics), with dropout off; its buffers are restored and its parameters and their ``.grad`` are
left untouched. The batch is moved to the device and floating dtype of the model's first parameter.

``import bnexp`` stays light: torch, pandas and the probe are imported when ``measure`` is first called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bnexp.errors import ConfigError, check_int, check_number, choose

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor, nn

    from bnexp.nn.hooked import ModuleSpec

__all__ = ["COLUMNS", "measure"]

COLUMNS = ("seed", "step", "layer", "module", "metric", "value")


def _split(batch, y):
    """``(x, y)`` from ``batch`` (a tensor, or an ``(x, y)`` pair) and the ``y`` argument."""
    import torch

    if isinstance(batch, (tuple, list)):
        if len(batch) != 2 or y is not None:
            raise ConfigError("batch", f"{type(batch).__name__} of {len(batch)}", "a tensor x, or an (x, y) pair "
                              "(then no y= argument)")
        batch, y = batch
    if not isinstance(batch, torch.Tensor) or batch.dim() < 1 or len(batch) < 2:
        shown = f"tensor of shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ConfigError("batch", shown, "a tensor of at least 2 samples along dim 0 (the metrics are of the batch's "
                          "n × d matrix of features)")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[:1] != batch.shape[:1]):
        raise ConfigError("y", type(y).__name__, f"a tensor of {len(batch)} labels (one per sample of the batch)")
    return batch, y


def measure(model: nn.Module, batch: Tensor | tuple[Tensor, Tensor], metrics: str | Sequence[str] | None = None,
            modules: ModuleSpec = None, *, y: Tensor | None = None, point: str = "post", grad_norms: bool = False,
            loss: str = "ce", tau: float = 0.5, top_k: int = 10, rank_tol: float = 1e-9, seed: int = 0,
            step: int = 0) -> pd.DataFrame:
    """The probe's rows for ``model`` on ``batch`` (module docstring), as a DataFrame with :data:`COLUMNS`.

    ``metrics``: names of :data:`bnexp.metrics.MEASURES` (default: the probe's, rank_torch, soft_rank,
    rank_lower_bound). ``modules``: what to hook (:mod:`bnexp.nn.hooked`: module types, qualified names, or
    ``None`` = every activation module). ``point``: ``post`` (the module's output, = ``norm``) or ``pre`` (its
    input). ``grad_norms`` needs labels (``batch=(x, y)`` or ``y``); ``loss``: ``ce`` or ``mse``. ``tau``,
    ``top_k``, ``rank_tol``: the options of soft_rank, top_eigenvalues, rank_abs. ``seed``, ``step``: copied into
    their columns. An unknown metric, module name or option raises :class:`~bnexp.errors.ConfigError` (a
    ``ValueError``) naming it and the valid choices.
    """
    import pandas as pd

    from bnexp import metrics as measures
    from bnexp.nn.hooked import Hooked
    from bnexp.probe import POINTS, ProbeSpec, dropout_off, probe, representations, values_to_rows
    from bnexp.probe.assemble import stacked_items
    from bnexp.training.optim import LOSSES

    names = ProbeSpec().metrics if metrics is None else ((metrics,) if isinstance(metrics, str) else tuple(metrics))
    if not names:
        raise ConfigError("metrics", metrics, "a non-empty list of metric names, e.g. ['soft_rank']")
    for name in names:
        choose("metrics", name, sorted(measures.MEASURES))
    choose("point", point, POINTS)
    choose("loss", loss, LOSSES)
    spec = ProbeSpec(metrics=names, point=point, grad_norms=bool(grad_norms), loss=loss,
                     tau=check_number("tau", tau, 0.0, 1.0), top_k=check_int("top_k", top_k, 1),
                     rank_tol=check_number("rank_tol", rank_tol, 0.0, open_lo=True))
    x, y = _split(batch, y)
    if grad_norms and y is None:
        raise ConfigError("grad_norms", True, "labels to differentiate a loss: pass batch=(x, y) or y=")
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if x.is_floating_point() else x.dtype)
        y = y.to(param.device) if y is not None else None

    hooked = Hooked(model, modules)
    if y is not None:
        items = probe(hooked, x, y, spec, weights=False)
    else:
        with dropout_off(hooked):
            reps = representations(hooked, x, point)
        items = stacked_items([(layer, h[None]) for layer, h in reps], names, replicates=1, **spec.options)[0]
    if not hooked.layer_names:
        raise ConfigError("modules", modules, "the chosen modules never ran in the model's forward pass; hooked: "
                          + ", ".join(n for n, _ in hooked.hooked))
    weights = hooked.weight_names()
    rows = []
    for row_seed, row_step, layer, metric, value in values_to_rows(items, seed, step):
        module = None if layer is None else (weights if metric == "grad_norm" else hooked.layer_names)[layer]
        rows.append((row_seed, row_step, layer, module, metric, value))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["layer"] = frame["layer"].astype("Int64")
    return frame

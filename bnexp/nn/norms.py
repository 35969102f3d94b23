"""Normalisation variants: batch norms (per feature, statistics over the batch), per-sample norms, weight norm.

Every layer takes ``(n, d)`` or ``(n, C, *spatial)`` input. The batch norms reduce over every dim except dim 1,
so for a conv feature map the statistics of channel c are taken over (N, H, W). In the papers' notation
(H ∈ R^{d×N}, rows = features) the theory's BN is ``diag(M)^{-1/2} H`` with ``M = H Hᵀ / N``; in code
orientation that is ``x / sqrt(mean over rows of x²)``, column by column. The per-sample norms (``layernorm``,
``rmsnorm``, ``groupnorm``) reduce over dims 1, 2, … of each sample (a group of channels for ``groupnorm``) and
have a per-feature (per-channel) affine part; they act identically in train and eval mode and need no batch.

| name              | forward (BN: per feature; LN/RMS/GN: per sample)      | used by                       |
|-------------------|-------------------------------------------------------|-------------------------------|
| ``bn_torch``      | (x − μ_B)/sqrt(var_B + 1e-5)·γ + β, running stats     | rank (VGG/ResNet), depth      |
| ``bn_nocenter``   | x / sqrt(mean_B(x²) + 1e-5)·γ + β, running 2nd moment | rank Figs 5, 7, 13            |
| ``bn_theory``     | x / sqrt(mean_B(x²))  (``unit_norm``: x / ‖x‖₂)       | rank theory, depth Eq. 4,     |
|                   |                                                       | ortho Eq. 1 (``unit_norm``)   |
| ``bn_center``     | (x − μ_B)/sqrt(var_B,biased + eps), eps = 0           | rank Fig 2 code, depth App. H |
| ``bn_detach_var`` | ``bn_torch`` with 1/sqrt(var_B + 1e-5) detached       | lowrank theory (Eq. 5)        |
|                   | in backprop (stop-grad on the variance)               |                               |
| ``layernorm``     | (x − μ_s)/sqrt(var_s + 1e-5)·γ + β over each sample s | beyond the papers             |
|                   | (its C·H·W values): nn.LayerNorm(d) on (n, d),        |                               |
|                   | nn.GroupNorm(1, C) on (n, C, H, W)                    |                               |
| ``rmsnorm``       | x / sqrt(mean_s(x²) + 1e-5)·γ over each sample s (no  | beyond the papers             |
|                   | centring, no β): nn.RMSNorm(d, eps=1e-5) on (n, d)    |                               |
| ``groupnorm``     | ``layernorm`` over each sample and group of C/G       | beyond the papers             |
|                   | channels (``groups`` G = 8): nn.GroupNorm(G, C)       |                               |
| ``weightnorm``    | identity; every weight layer W = g·V/‖V‖ row-wise     | beyond the papers             |
|                   | (:mod:`bnexp.nn.weight_norm`, applied after init)     |                               |
| ``none``          | identity                                              | —                             |

Models take a ``norm_layer`` factory ``num_features → module`` (as timm injects ``norm_layer``):
``norm_layer(name, spatial=..., **options)`` resolves the name through the ``NORMS`` registry and checks the
options; ``make_norm(name, num_features, ...)`` builds one layer. Unknown names and options raise
:class:`bnexp.errors.ConfigError`. ``is_norm(module)`` says whether a module normalises (``NORM_TYPES``: the
registered layers, torch's BatchNorm{1,2,3}d, GroupNorm, LayerNorm and RMSNorm), e.g. to keep norms in float32
under autocast; ``weightnorm``'s slot is the identity and not one. A norm that reparametrizes the weights instead
(``weightnorm``) says so through ``reparametrization(name)``: the function the engine applies to the model after
``init_weights`` (None for every other norm).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int
from bnexp.nn.registry import Registry
from bnexp.nn.weight_norm import WeightNorm

__all__ = [
    "NORMS",
    "NORM_TYPES",
    "BatchNormCenter",
    "BatchNormDetachVar",
    "BatchNormNoCenter",
    "BatchNormTheory",
    "GroupNorm",
    "LayerNorm",
    "NormLayer",
    "RMSNorm",
    "batch_statistics",
    "is_norm",
    "make_norm",
    "norm_layer",
    "reparametrization",
]

NormLayer = Callable[[int], nn.Module]  # num_features → a normalisation layer


def _batch_dims(x: Tensor) -> tuple[int, ...]:
    """Dims holding samples (and spatial positions): every dim except the feature/channel dim 1."""
    if x.dim() < 2:
        raise ValueError(f"expected input of shape (n, d) or (n, C, ...), got {tuple(x.shape)}")
    return (0, *range(2, x.dim()))


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a (C,) vector so it broadcasts against x of shape (n, C, *spatial)."""
    return v.view(1, -1, *([1] * (x.dim() - 2)))


def _check_features(x: Tensor, num_features: int) -> None:
    if x.shape[1] != num_features:
        raise ValueError(f"expected {num_features} features in dim 1, got input of shape {tuple(x.shape)}")


def _check_nonneg(key: str, value: float) -> None:
    if not value >= 0:  # also rejects nan
        raise ConfigError(key, value, "must be >= 0")


class BatchNormTheory(nn.Module):
    """The theory's BN: ``y = x / sqrt(mean_B(x²) + eps)`` per feature, i.e. ``diag(M)^{-1/2} H``.

    Rank paper Eq. 2 with α=0, β=1 (markov paper's FBN) and the depth paper's code (``bn_rms``): no centring, no
    affine part, no running statistics — train and eval modes are identical. Every output feature has
    unit second moment over the batch, so ``Tr M = d``.

    ``unit_norm=True`` divides by the Euclidean norm over the batch instead, ``y = x / ‖x‖₂`` (depth
    eq. 4 / ortho Eq. 1 ``BN(H) = diag(H Hᵀ)^{-1/2} H``): the same map scaled by ``1/√n`` (n = number
    of reduced entries per feature).

    ``eps`` defaults to 0 as in the theory; a tiny guard (e.g. 1e-12) avoids 0/0 for a feature that is
    identically zero over the batch (ReLU without centring can produce one).
    """

    def __init__(self, num_features: int, eps: float = 0.0, unit_norm: bool = False):
        super().__init__()
        _check_nonneg("norm.eps", eps)
        self.num_features, self.eps, self.unit_norm = num_features, eps, unit_norm

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.num_features)
        sq = x.square()
        sq = sq.sum(_batch_dims(x), keepdim=True) if self.unit_norm else sq.mean(_batch_dims(x), keepdim=True)
        return x / torch.sqrt(sq + self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, unit_norm={self.unit_norm}"


class BatchNormCenter(nn.Module):
    """Centred BN without affine part or running stats: ``y = (x − μ_B) / sqrt(var_B + eps)``.

    Markov paper Eq. 1 read as standard BN, and the depth paper's ``mean_reduction`` BN:
    ``√n (h − mean h)/‖h − mean h‖₂`` per feature with the biased variance and ``eps = 0`` by default.
    Batch statistics are used in train and eval mode alike.

    ``unbiased=True`` divides by the unbiased standard deviation (``torch.std``), the released
    ``code_fig_1.py`` variant.
    """

    def __init__(self, num_features: int, eps: float = 0.0, unbiased: bool = False):
        super().__init__()
        _check_nonneg("norm.eps", eps)
        self.num_features, self.eps, self.unbiased = num_features, eps, unbiased

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.num_features)
        dims = _batch_dims(x)
        var, mean = torch.var_mean(x, dims, correction=int(self.unbiased), keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, unbiased={self.unbiased}"


class BatchNormNoCenter(nn.Module):
    """BN without centring: ``y = x / sqrt(mean_B(x²) + eps) · γ + β`` per feature.

    The rank paper's "BN without centering" (rank Figs 5, 7, 13; markov Fig 11). Unlike the released ``my_bn.py``
    — which passed zeros as ``running_mean`` to ``F.batch_norm`` and so still centred in training mode —
    this layer never subtracts the mean. Training mode normalises with the batch second moment and
    updates ``running_sq ← (1 − momentum)·running_sq + momentum·mean_B(x²)``; eval mode uses
    ``running_sq``. γ = 1 and β = 0 at init, as in ``nn.BatchNorm``.
    """

    running_sq: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        _check_nonneg("norm.eps", eps)
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError("norm.momentum", momentum, "must lie in [0, 1]")
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # A second moment of 1 is the fixed point of the normalised chain, the analogue of running_var=1.
        self.register_buffer("running_sq", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.num_features)
        if self.training:
            sq = x.square().mean(_batch_dims(x))  # (C,)
            with torch.no_grad():
                self.running_sq.lerp_(sq.detach().to(self.running_sq.dtype), self.momentum)
        else:
            sq = self.running_sq
        y = x / torch.sqrt(_per_channel(sq, x) + self.eps)
        if self.affine:
            y = y * _per_channel(self.weight, x) + _per_channel(self.bias, x)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNormDetachVar(nn.modules.batchnorm._BatchNorm):
    """``nn.BatchNorm1d/2d`` with the batch variance detached: ``y = γ·(x − μ_B)·sg[1/sqrt(var_B + eps)] + β``.

    The low-rank paper's BN (Eq. 5, ``n(v) = γ·A(X̃)(v − b(X̃)) + β``) as its theory differentiates it: the factor
    ``A = diag(1/sqrt(var_B + eps))`` is a constant in backprop (stop-grad), while the gradient through the batch
    mean ``b = μ_B`` flows as usual. The forward pass, parameters and buffers are those of ``nn.BatchNorm``: eps =
    1e-5, per-channel γ = 1 and β = 0 at init, biased batch variance in the forward, running mean and *unbiased*
    running variance with ``momentum`` (None: cumulative average), eval mode with the running statistics (batch
    statistics when ``track_running_stats=False``). Any input of rank ≥ 2, statistics per dim-1 channel over all
    other dims — so one class serves ``(n, d)`` and ``(n, C, *spatial)`` input. Being a ``_BatchNorm``, code that
    handles torch's BN through its running statistics (e.g. ``probe.bn_eval=full_train_stats``) handles it too.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None):
        _check_nonneg("norm.eps", eps)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ConfigError("norm.momentum", momentum, "must lie in [0, 1] (or None: cumulative average)")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)

    def _check_input_dim(self, x: Tensor) -> None:
        _batch_dims(x)
        _check_features(x, self.num_features)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if self.training or self.running_mean is None:  # batch statistics, as nn.BatchNorm decides
            n = x.numel() // x.shape[1]
            if n <= 1:
                raise ValueError(f"expected more than 1 value per channel with batch statistics, got input of "
                                 f"shape {tuple(x.shape)}")
            var, mean = torch.var_mean(x, _batch_dims(x), correction=0)  # (C,), biased variance
            if self.training and self.track_running_stats:
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                with torch.no_grad():
                    self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                    unbiased = var.detach() * (n / (n - 1))
                    self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
            inv_std = torch.rsqrt(var + self.eps).detach()  # stop-grad on the variance; the mean keeps its gradient
        else:
            mean, inv_std = self.running_mean, torch.rsqrt(self.running_var + self.eps)
        y = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
        if self.weight is not None:
            y = y * _per_channel(self.weight, x)
        if self.bias is not None:
            y = y + _per_channel(self.bias, x)
        return y


class GroupNorm(nn.Module):
    """Group normalisation per sample: ``y = (x − μ_{s,g}) / sqrt(var_{s,g} + eps) · γ + β``.

    For sample s and group g of ``C/groups`` consecutive channels, μ and the biased variance are taken over the
    group's channels and every spatial position; γ, β (init 1, 0) are per channel. For ``(n, C)`` and
    ``(n, C, *spatial)`` alike this is exactly ``nn.GroupNorm(groups, C, eps)``. No running statistics: train and
    eval mode are the same. ``groups`` must divide the channel count of every layer the model builds
    (:class:`ConfigError` naming ``norm.groups`` otherwise).
    """

    def __init__(self, num_features: int, groups: int = 8, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        check_int("norm.groups", groups, 1)
        if num_features % groups:
            raise ConfigError("norm.groups", groups, f"must divide the feature (channel) count of every norm "
                              f"layer; this one has {num_features}")
        _check_nonneg("norm.eps", eps)
        self.num_features, self.groups, self.eps, self.affine = num_features, groups, eps, affine
        self.register_parameter("weight", nn.Parameter(torch.ones(num_features)) if affine else None)
        self.register_parameter("bias", nn.Parameter(torch.zeros(num_features)) if affine else None)

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.num_features)
        grouped = x.reshape(x.shape[0], self.groups, -1)  # (n, G, C/G · spatial): channels of a group are adjacent
        var, mean = torch.var_mean(grouped, -1, correction=0, keepdim=True)
        y = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        if self.affine:
            y = y * _per_channel(self.weight, x) + _per_channel(self.bias, x)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, affine={self.affine}"


class LayerNorm(GroupNorm):
    """Layer normalisation per sample: ``y = (x − μ_s) / sqrt(var_s + eps) · γ + β`` over all of sample s.

    For ``(n, d)`` input: the mean and biased variance over the d features, γ, β per feature (init 1, 0), exactly
    ``nn.LayerNorm(d, eps)``. For conv maps ``(n, C, H, W)`` (``spatial=True``): over (C, H, W) with a
    per-channel γ, β, i.e. exactly ``nn.GroupNorm(1, C, eps)`` (``nn.LayerNorm((C, H, W))`` would have an
    affine part per position instead). :class:`GroupNorm` with one group.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__(num_features, 1, eps, affine)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class RMSNorm(nn.Module):
    """RMS normalisation per sample: ``y = x / sqrt(mean_s(x²) + eps) · γ``, no centring and no β.

    The mean of x² is over all of sample s ((C, *spatial) for conv maps), γ per feature (channel), init 1. For
    ``(n, d)`` input exactly ``nn.RMSNorm(d, eps=eps)``; ``eps`` is 1e-5 here (torch's default ``None`` would
    be the dtype's machine epsilon). No running statistics: train and eval mode are the same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        _check_nonneg("norm.eps", eps)
        self.num_features, self.eps, self.affine = num_features, eps, affine
        self.register_parameter("weight", nn.Parameter(torch.ones(num_features)) if affine else None)

    def forward(self, x: Tensor) -> Tensor:
        _check_features(x, self.num_features)
        sq = x.square().mean(tuple(range(1, x.dim())), keepdim=True)  # (n, 1, …): one value per sample
        y = x * torch.rsqrt(sq + self.eps)
        return y * _per_channel(self.weight, x) if self.affine else y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


# Config name → constructor ``cls(num_features, **options)``. ``bn_torch`` becomes BatchNorm2d when the
# caller says the input is a conv feature map; the custom layers handle any rank ≥ 2 themselves.
NORMS: Registry[type[nn.Module]] = Registry("norm.name", {
    "bn_torch": nn.BatchNorm1d,
    "bn_nocenter": BatchNormNoCenter,
    "bn_theory": BatchNormTheory,
    "bn_center": BatchNormCenter,
    "bn_detach_var": BatchNormDetachVar,
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "groupnorm": GroupNorm,
    "weightnorm": WeightNorm,
    "none": nn.Identity,
})

# Module types that normalise: the registered layers (torch's BatchNorm1d/2d/3d and BatchNormDetachVar through
# their base class _BatchNorm) and torch's other norms a model may hold; not the identities (none, weightnorm's slot).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm,
    *(cls for cls in (NORMS[name] for name in NORMS) if not issubclass(cls, (nn.Identity, nn.BatchNorm1d))),
)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (an instance of one of ``NORM_TYPES``)."""
    return isinstance(module, NORM_TYPES)


def batch_statistics(name: str) -> bool:
    """Whether norm ``name`` normalises each feature over the minibatch (every ``bn_*`` variant), so that it cannot
    normalise a batch of one sample; the per-sample norms, ``weightnorm`` and ``none`` can."""
    return not issubclass(NORMS.get(name), (nn.Identity, GroupNorm, RMSNorm))


def reparametrization(name: str) -> Callable[[nn.Module], nn.Module] | None:
    """What norm ``name`` does to a model's weights after initialisation: ``weightnorm`` →
    :func:`bnexp.nn.weight_norm.weight_normalize`; None for every norm that is a layer only."""
    return getattr(NORMS.get(name), "reparametrize", None)


def _options(cls: type[nn.Module]) -> list[str] | None:
    """Keyword options a norm constructor accepts (None: it accepts anything, like nn.Identity)."""
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in ("num_features", "device", "dtype")]


def norm_layer(name: str | NormLayer, *, spatial: bool = False, **options) -> NormLayer:
    """The factory ``num_features → layer`` of the normalisation ``name`` with ``options`` (e.g. ``eps``,
    ``unit_norm``, ``momentum``); a factory given instead of a name is returned as it is (with ``options``
    bound), as a model's ``norm`` argument may be either.

    ``spatial=True`` marks conv feature maps ``(n, C, H, W)``: ``bn_torch`` then is ``nn.BatchNorm2d``
    (``nn.BatchNorm1d`` otherwise). An unknown name or option raises :class:`ConfigError` listing the valid
    ones, here rather than when a model calls the factory.
    """
    if callable(name):
        return partial(name, **options) if options else name
    cls = NORMS.get(name)
    if cls is nn.BatchNorm1d and spatial:
        cls = nn.BatchNorm2d
    valid = _options(cls)
    if valid is not None:
        for key in options:
            if key not in valid:
                raise ConfigError(f"norm.{name} option", key, valid)
    return partial(cls, **options)


def make_norm(name: str, num_features: int, *, spatial: bool = False, **options) -> nn.Module:
    """One normalisation layer: ``norm_layer(name, spatial=spatial, **options)(num_features)``."""
    return norm_layer(name, spatial=spatial, **options)(num_features)

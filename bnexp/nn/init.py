"""Weight initialisations used by the rank, ortho and depth papers and their released code.

``init_weights(model, scheme)`` redraws the ``weight`` of every ``nn.Linear`` and ``nn.Conv{1,2,3}d``
and touches nothing else: biases keep PyTorch's default U(−1/√fan_in, 1/√fan_in) drawn at construction,
norm layers keep γ = 1, β = 0. ``fan_in`` is ``in_features`` (``in_channels·k_h·k_w`` for a conv),
``fan_out`` is ``out_features`` (``out_channels·k_h·k_w``), as in ``torch.nn.init``.

| scheme           | law of W_ij                                   | mean, variance              |
|------------------|-----------------------------------------------|-----------------------------|
| ``torch_default``| U(−1/√fan_in, 1/√fan_in) (kaiming_uniform a=√5)| 0, 1/(3 fan_in)            |
| ``std_gauss``    | N(0, 1)                                       | 0, 1                        |
| ``std_unif``     | U[−√3, √3]                                    | 0, 1                        |
| ``asym``         | U(0, 2/√fan_in) = 2·|torch_default|           | 1/√fan_in, 1/(3 fan_in)     |
| ``orthogonal``   | Haar on O(d) (semi-orthogonal if rectangular) | —                           |
| ``xavier_normal``| N(0, 2/(fan_in+fan_out))                      | 0, 2/(fan_in+fan_out)       |
| ``xavier_uniform``| U(±sqrt(6/(fan_in+fan_out)))                 | 0, 2/(fan_in+fan_out)       |

``gain`` multiplies every scheme's weights (variance × gain²); for the xavier schemes it is exactly
torch's ``gain`` argument. The config default is 1. Note that the depth paper's code ignores its gain for
orthogonal init, and only passes ``calculate_gain(act)`` to xavier_normal (depth paper code).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError
from bnexp.nn.registry import Registry

__all__ = ["INITS", "init_weights"]

Generator = torch.Generator | None


def _fans(w: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or Conv (out, in, *kernel) weight."""
    receptive = w[0][0].numel()
    return w.shape[1] * receptive, w.shape[0] * receptive


def _torch_default(w: Tensor, gain: float, generator: Generator) -> None:
    # Same call as nn.Linear/_ConvNd.reset_parameters for the weight (bias left as constructed), so with
    # generator=None the draw equals PyTorch's own; with a generator it is reproducible.
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
    if gain != 1.0:
        w.data.mul_(gain)


def _std_gauss(w: Tensor, gain: float, generator: Generator) -> None:
    nn.init.normal_(w, 0.0, gain, generator=generator)


def _std_unif(w: Tensor, gain: float, generator: Generator) -> None:
    bound = gain * math.sqrt(3.0)  # U[−√3, √3] has variance 1
    nn.init.uniform_(w, -bound, bound, generator=generator)


def _asym(w: Tensor, gain: float, generator: Generator) -> None:
    fan_in, _ = _fans(w)
    nn.init.uniform_(w, 0.0, 2.0 * gain / math.sqrt(fan_in), generator=generator)


def _orthogonal(w: Tensor, gain: float, generator: Generator) -> None:
    # torch draws a Gaussian matrix, takes QR and multiplies Q by sign(diag R): Haar measure on O(d).
    nn.init.orthogonal_(w, gain=gain, generator=generator)


def _xavier_normal(w: Tensor, gain: float, generator: Generator) -> None:
    nn.init.xavier_normal_(w, gain=gain, generator=generator)


def _xavier_uniform(w: Tensor, gain: float, generator: Generator) -> None:
    nn.init.xavier_uniform_(w, gain=gain, generator=generator)


# Config name → in-place initialiser ``fn(weight, gain, generator)``.
INITS: Registry[Callable[[Tensor, float, Generator], None]] = Registry("init.name", {
    "torch_default": _torch_default,
    "std_gauss": _std_gauss,
    "std_unif": _std_unif,
    "asym": _asym,
    "orthogonal": _orthogonal,
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
})

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_weights(
    model: nn.Module, scheme: str, *, gain: float = 1.0, generator: torch.Generator | None = None,
    zero_bias: bool = False,
) -> nn.Module:
    """Redraw the weight of every Linear/Conv layer of ``model`` (in ``model.modules()`` order) in place.

    ``generator`` (on the weights' device) makes the draws reproducible: the same seed gives the same
    weights whatever else differs (norm layers, activations). ``zero_bias`` (``init.zero_bias``) also sets
    those layers' biases to 0, as the ortho paper's code does for its training figures. Returns ``model``.
    """
    fn = INITS.get(scheme)
    if not gain > 0:
        raise ConfigError("init.gain", gain, "must be > 0")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _WEIGHTED):
                fn(module.weight, gain, generator)
                if zero_bias and module.bias is not None:
                    module.bias.zero_()
    return model

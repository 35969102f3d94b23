"""Activations and the shaped gain σ(α_ℓ x) of the depth paper (Eq. 11).

The depth paper's eq. (11) is ``X_{ℓ+1} = σ(α_ℓ · BN(W_ℓ X_ℓ))``: the gain multiplies the activation's
*input* and nothing rescales the output by 1/α_ℓ. Its code uses ``α_ℓ = (ℓ+1)^{exponent}`` with 0-indexed
ℓ and exponent = −0.4 in every experiment; Fig F1 uses a constant α at every layer instead.

Models take an ``act_layer`` factory ``gain → module`` (as timm injects ``act_layer``): ``act_layer(name)``
resolves the name through the ``ACTIVATIONS`` registry.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError
from bnexp.nn.registry import Registry

__all__ = ["ACTIVATIONS", "ActLayer", "Activation", "act_layer", "gain_schedule", "make_activation"]

ActLayer = Callable[[float], nn.Module]  # the gain α → the module computing σ(α x)


def _linear(x: Tensor) -> Tensor:
    return x


def _tanh_plus_one(x: Tensor) -> Tensor:
    """tanh(x) + 1: what the ortho paper's code calls "sigmoid" (its Fig 6); not the logistic ``sigmoid``."""
    return torch.tanh(x) + 1


# Config name → elementwise function σ.
ACTIVATIONS: Registry[Callable[[Tensor], Tensor]] = Registry("act.name", {
    "linear": _linear,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "sigmoid": torch.sigmoid,  # the logistic function 1/(1 + e^{-x})
    "tanh_plus_one": _tanh_plus_one,
})


class Activation(nn.Module):
    """``y = σ(gain · x)`` for σ = ``ACTIVATIONS[name]`` (the shaped activation when gain ≠ 1)."""

    def __init__(self, name: str, gain: float = 1.0):
        super().__init__()
        self.name, self.gain, self.fn = name, float(gain), ACTIVATIONS.get(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x if self.gain == 1.0 else self.gain * x)

    def extra_repr(self) -> str:
        return f"{self.name}, gain={self.gain:g}"


def act_layer(name: str | ActLayer) -> ActLayer:
    """The factory ``gain → Activation(name, gain)``; unknown ``name`` raises ``ConfigError("act.name", ...)``
    here. A factory given instead of a name is returned as it is (a model's ``act`` argument may be either)."""
    if callable(name):
        return name
    ACTIVATIONS.get(name)
    return partial(Activation, name)


def make_activation(name: str, gain: float = 1.0) -> nn.Module:
    """The module computing ``σ(gain · x)``: ``act_layer(name)(gain)``."""
    return act_layer(name)(gain)


def gain_schedule(layer: int, exponent: float = 0.0, constant: float = 1.0) -> float:
    """Pre-activation gain ``α_ℓ = constant · (ℓ+1)^(−exponent)`` for the 0-indexed hidden layer ℓ.

    ``exponent`` is the depth paper's gain exponent γ with the sign of its CLI (``--gain-exponent 0.4``
    means α_ℓ = (ℓ+1)^(−0.4)); ``exponent=0`` gives the constant gain of its Fig F1.
    """
    if layer < 0:
        raise ConfigError("layer", layer, "a 0-indexed layer must be >= 0")
    return constant * (layer + 1) ** (-exponent)

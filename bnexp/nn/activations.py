"""Activations and the shaped gain σ(α_ℓ x) of the depth paper (Eq. 11).

The depth paper's eq. (11) is ``X_{ℓ+1} = σ(α_ℓ · BN(W_ℓ X_ℓ))``: the gain multiplies the activation's
*input* and nothing rescales the output by 1/α_ℓ. Its code uses ``α_ℓ = (ℓ+1)^{exponent}`` with 0-indexed
ℓ and exponent = −0.4 in every experiment; Fig F1 uses a constant α at every layer instead.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError

__all__ = ["ACTIVATIONS", "Activation", "gain_schedule", "make_activation"]


def _linear(x: Tensor) -> Tensor:
    return x


def _tanh_plus_one(x: Tensor) -> Tensor:
    """tanh(x) + 1: what the ortho paper's code calls "sigmoid" (its Fig 6); not the logistic ``sigmoid``."""
    return torch.tanh(x) + 1


# Config name → elementwise function σ.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": _linear,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sin": torch.sin,
    "sigmoid": torch.sigmoid,  # the logistic function 1/(1 + e^{-x})
    "tanh_plus_one": _tanh_plus_one,
}


class Activation(nn.Module):
    """``y = σ(gain · x)`` for σ = ``ACTIVATIONS[name]`` (the shaped activation when gain ≠ 1)."""

    def __init__(self, name: str, gain: float = 1.0):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ConfigError("act.name", name, ACTIVATIONS)
        self.name, self.gain, self.fn = name, float(gain), ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x if self.gain == 1.0 else self.gain * x)

    def extra_repr(self) -> str:
        return f"{self.name}, gain={self.gain:g}"


def make_activation(name: str, gain: float = 1.0) -> nn.Module:
    """The module computing ``σ(gain · x)``; unknown ``name`` raises ``ConfigError("act.name", ...)``."""
    return Activation(name, gain)


def gain_schedule(layer: int, exponent: float = 0.0, constant: float = 1.0) -> float:
    """Pre-activation gain ``α_ℓ = constant · (ℓ+1)^(−exponent)`` for the 0-indexed hidden layer ℓ.

    ``exponent`` is the depth paper's gain exponent γ with the sign of its CLI (``--gain-exponent 0.4``
    means α_ℓ = (ℓ+1)^(−0.4)); ``exponent=0`` gives the constant gain of its Fig F1.
    """
    if layer < 0:
        raise ConfigError("layer", layer, "a 0-indexed layer must be >= 0")
    return constant * (layer + 1) ** (-exponent)

"""The precision plan of a training run: autocast dtype, memory layout, and float32 normalisation layers.

Devices and precision (``runtime.amp``): the dataset is resident on the device; on CUDA a convolutional model
(one with a ``Conv2d``) and its image inputs use ``torch.channels_last``. With bf16 autocast
(``runtime.amp=auto`` on CUDA with ``dtype=float32``, or ``bf16`` anywhere) the training forward pass, the loss
and the test-set passes run under ``torch.autocast(device, torch.bfloat16)``. Autocast has no rule for
``batch_norm`` (it is in neither of its CUDA op lists: it runs in its input's dtype, bf16 after a bf16 conv),
so every normalisation layer gets a forward pre-hook that casts its input to float32 (:func:`float32_norms`):
statistics, normalisation and running averages are float32, and the next conv or Linear casts back to bf16.
The probe runs without autocast (float32 representations, float64 metrics).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError, choose
from bnexp.nn import is_norm

__all__ = ["AMP_SETTINGS", "PLAIN", "Precision", "apply", "autocast", "check_amp", "float32_norms", "is_conv", "layout",
           "precision_plan"]

AMP_SETTINGS = ("auto", "bf16", "off")


def check_amp(setting) -> str:
    """``runtime.amp``: ``auto``, ``bf16`` or ``off`` (YAML reads a bare ``off`` as false, accepted too)."""
    if setting is False or setting is None:
        return "off"
    return choose("runtime.amp", setting, AMP_SETTINGS)


@dataclass(frozen=True)
class Precision:
    """How a run computes: the autocast dtype (None: none) and whether conv inputs/weights are channels_last."""

    autocast: torch.dtype | None = None
    channels_last: bool = False

    def describe(self) -> str:
        amp = "bf16 autocast (norms float32)" if self.autocast is not None else "no autocast"
        return amp + (", channels_last" if self.channels_last else "")


PLAIN = Precision()  # no autocast, the default layout: the CPU's plan, and the default of the passes


def precision_plan(device_type: str, dtype: torch.dtype, amp, conv: bool) -> Precision:
    """The precision of a training run (module docstring).

    ``amp``: ``auto`` → bf16 autocast on CUDA when ``dtype`` is float32, none on the CPU or for float64;
    ``bf16`` → bf16 autocast on any device (ConfigError unless float32: autocast leaves float64 alone);
    ``off`` → none. ``channels_last``: on CUDA for a convolutional model (``conv``) only.
    """
    amp = check_amp(amp)
    if amp == "bf16" and dtype != torch.float32:
        raise ConfigError("runtime.amp", amp, f"bf16 autocast needs dtype=float32 (got {dtype}; autocast "
                          "does not cast float64); use runtime.amp=off or dtype=float32")
    use = amp == "bf16" or (amp == "auto" and device_type == "cuda" and dtype == torch.float32)
    return Precision(torch.bfloat16 if use else None, conv and device_type == "cuda")


def is_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _float32_inputs(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if isinstance(a, Tensor) and a.dtype in (torch.bfloat16, torch.float16) else a
                 for a in args)


def float32_norms(model: nn.Module) -> list:
    """Make every normalisation layer of ``model`` compute in float32 under autocast (a forward pre-hook casts
    a bf16/fp16 input to float32). Returns the hook handles."""
    return [m.register_forward_pre_hook(_float32_inputs) for m in model.modules() if is_norm(m)]


def apply(model: nn.Module, precision: Precision) -> nn.Module:
    """Put ``model`` in the plan's layout (channels_last) and, under autocast, its norms in float32."""
    if precision.channels_last:
        model.to(memory_format=torch.channels_last)
    if precision.autocast is not None:
        float32_norms(model)
    return model


def autocast(device: torch.device, precision: Precision):
    """``torch.autocast`` for the plan's dtype on ``device``, or a no-op context without autocast."""
    if precision.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.autocast)


def layout(x: Tensor, precision: Precision) -> Tensor:
    """An image batch (4-d) in channels_last when the plan says so; anything else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if precision.channels_last and x.dim() == 4 else x

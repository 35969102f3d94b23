"""Where a run executes: the ``runtime`` config section (device, torch threads) and the dtype names.

``runtime.device``: ``auto`` picks CUDA when available for networks (``train``); random-matrix chains
(``simulate``) stay on the CPU unless a device is named, because their generators draw different numbers on
CUDA than on the CPU — a named device is therefore part of a chain run's key (see ``results.key_config``).
``runtime.threads``: ``auto`` lets each engine pick by its per-op work (small matrices are far faster on one
thread on a few cores), or an integer ≥ 1.
"""

from __future__ import annotations

from typing import Any

import torch

from bnexp.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: Any, prefer_cuda: bool = True) -> torch.device:
    """The torch device for ``runtime.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:<i>``); ``auto`` is CUDA when
    available and the engine gains from it (``prefer_cuda``: ``engines.Engine.prefers_cuda``), else the CPU."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        use_cuda = prefer_cuda and torch.cuda.is_available()
        return torch.device("cuda" if use_cuda else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError("runtime.device", name, "auto, cpu, cuda or cuda:<index>") from err
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("runtime.device", name, "auto, cpu, cuda or cuda:<index>")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device", name, "CUDA is not available here; use auto or cpu")
    return device


def check_threads(setting: Any) -> str | int:
    """``runtime.threads``: ``"auto"`` or an integer ≥ 1 (returned as given)."""
    if setting == "auto":
        return "auto"
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ConfigError("runtime.threads", setting, "must be 'auto' or an integer ≥ 1")
    return setting


def validate(cfg: Any, prefer_cuda: bool) -> None:
    """Check the ``runtime`` section of a composed config before any work."""
    section = cfg.get("runtime") or {}
    resolve_device(section.get("device", "auto"), prefer_cuda)
    check_threads(section.get("threads", "auto"))

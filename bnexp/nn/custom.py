"""``model=custom``: any importable ``nn.Module`` factory, trained and probed by the network engine.

``configs/model/custom.yaml`` names the factory and what the probe hooks::

    bnexp train model=custom model.target=torchvision.models:resnet18 'model.kwargs={num_classes: 10}' \\
        'model.modules=[layer1,layer2,layer3,layer4]' data=cifar10 optim.epochs=2 dtype=float32

:class:`CustomModel` is :class:`~bnexp.nn.hooked.Hooked` around ``factory(**model.kwargs)``: its probe rows are
the metrics of the hooked module calls (layer = call index in forward order, each representation flattened per
sample) and the gradient norms of every module with a ≥ 2-D weight (:mod:`bnexp.nn.hooked`).

* The factory builds the whole model and gets nothing but ``model.kwargs``: not the data's input size, not its
  class count (pass it, e.g. ``num_classes``); the model must return ``(n, data.n_classes)`` logits, which the
  first probe checks (a ConfigError naming ``model.kwargs`` otherwise).
* The ``norm`` and ``act`` groups do not apply (the factory's model has its own layers): they must stay at the
  primary config's defaults, ``bn_torch`` and ``relu`` (:data:`DEFAULT_NORM`, :data:`DEFAULT_ACT`), which a custom
  run ignores; any other choice raises ConfigError instead of being silently ignored.
* ``init=torch_default`` keeps the factory's own weights. The factory runs under torch's global generator seeded
  from the replicate's ``model`` stream (``data.derive_seed(seed, "model")``), so a seed gives the same network
  every time; ``init.zero_bias`` still zeroes the Linear/Conv biases and ``init.gain`` must be 1. Any other
  ``init`` redraws every Linear/Conv weight as for bnexp's own models (:func:`bnexp.nn.init.init_weights`).

:func:`validate` checks all of this before any run starts (the engine's ``validate``, hence before every run of a
sweep): the factory is built once on the meta device (no memory; on the CPU when it cannot build there). How many
hooked calls a forward makes is known only after one, so an explicit ``probe.layers`` list is checked against
their count at the first probe. Seeds are probed one at a time (``runtime.batch_seeds=true`` is refused) and
custom runs never train in stacked groups.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from bnexp.errors import ConfigError
from bnexp.nn.hooked import Hooked, ModuleSpec
from bnexp.nn.init import init_weights

__all__ = ["DEFAULT_ACT", "DEFAULT_NORM", "KEYS", "CustomModel", "build", "initialise", "layers_bound", "resolve",
           "validate"]

TARGET = "model.target"
KEYS = ("name", "target", "kwargs", "modules")  # the keys of configs/model/custom.yaml
DEFAULT_NORM, DEFAULT_ACT = "bn_torch", "relu"  # configs/train.yaml's defaults, which a custom run ignores
_INITIALISED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers init_weights draws
_NOT_APPLIED = ("model=custom: the factory builds the whole model with its own layers, so the {group} group does "
                "not apply; leave it at its default, {default} (ignored by custom runs)")


def resolve(target: object) -> Callable[..., object]:
    """The factory named ``package.module:attr`` (``attr`` may be dotted, ``module:Class.create``).

    ConfigError naming ``model.target`` for a value without one ':', a module that does not import (with its
    error), a missing attribute, or an attribute that is not callable.
    """
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.partition(":")[::2]):
        raise ConfigError(TARGET, target, "package.module:factory — the module's import path, ':' and the "
                          "factory's name, e.g. torchvision.models:resnet18")
    path, _, attr = target.partition(":")
    try:
        found = importlib.import_module(path)
    except Exception as err:  # ImportError, or whatever importing the module raised
        raise ConfigError(TARGET, target, f"module {path!r} does not import: {type(err).__name__}: {err} (is it "
                          "installed, or its directory on PYTHONPATH?)") from err
    for part in attr.split("."):
        if not hasattr(found, part):
            public = sorted(n for n, v in vars(found).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(TARGET, target, f"{getattr(found, '__name__', path)!r} has no attribute {part!r}; "
                              f"its callables include: {', '.join(public[:12]) or 'none'}")
        found = getattr(found, part)
    if not callable(found):
        raise ConfigError(TARGET, target, f"{attr} is not callable (a {type(found).__name__}); name a factory "
                          "function or an nn.Module class")
    return found


def build(target: object, kwargs: Mapping | None = None) -> nn.Module:
    """``factory(**kwargs)`` of :func:`resolve` (``target``), checked to be an ``nn.Module``.

    Under the meta device (validation) a factory that cannot build there is built on the CPU instead.
    """
    factory = resolve(target)
    if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
        raise ConfigError("model.kwargs", kwargs, "a mapping of the factory's keyword arguments, e.g. "
                          "{num_classes: 10}")
    kwargs = dict(kwargs or {})
    try:
        model = factory(**kwargs)
    except Exception as err:
        if torch.get_default_device().type == "meta":  # e.g. a factory that reads tensor values while it builds
            with torch.device("cpu"):
                return build(target, kwargs)
        raise ConfigError(TARGET, target, f"the factory raised {type(err).__name__}: {err} (called with "
                          f"model.kwargs={kwargs})") from err
    if not isinstance(model, nn.Module):
        shown = repr(model)
        raise ConfigError(TARGET, target, f"the factory returned {type(model).__name__} "
                          f"({shown[:80] + '…' if len(shown) > 80 else shown}), not an nn.Module")
    return model


class CustomModel(Hooked):
    """``Hooked(factory(**kwargs), modules)`` for ``model=custom`` (module docstring); ``MODELS["custom"]``.

    ``d_in`` is not used (the factory builds the model); ``d_out``, when given, is the class count that
    ``forward_features`` checks the logits against. ``norm``/``act`` must be the defaults (ConfigError otherwise).
    Its model contract (:mod:`bnexp.nn.models`): ``check_config`` = :func:`validate`, ``feature_layers`` =
    :func:`layers_bound` of ``probe.layers``, and no vmapped seeds (the hooked calls are counted per model).
    """

    BATCH_SEEDS = False
    NORM_FROM_CONFIG = False  # the factory builds its own layers: norm=bn_torch is a placeholder

    @staticmethod
    def check_config(cfg: DictConfig) -> None:
        validate(cfg)

    @staticmethod
    def feature_layers(cfg: DictConfig) -> int:
        return layers_bound(cfg.probe.get("layers"))

    def __init__(self, d_in: int | None = None, d_out: int | None = None, *, target: str,
                 kwargs: Mapping | None = None, modules: ModuleSpec = "default", norm: str = DEFAULT_NORM,
                 act: str = DEFAULT_ACT, norm_kwargs: Mapping | None = None):
        if norm != DEFAULT_NORM:
            raise ConfigError("norm.name", norm, _NOT_APPLIED.format(group="norm", default=DEFAULT_NORM))
        if norm_kwargs:
            key = next(iter(norm_kwargs))
            raise ConfigError(f"norm.{key}", norm_kwargs[key], _NOT_APPLIED.format(group="norm", default=DEFAULT_NORM))
        if act != DEFAULT_ACT:
            raise ConfigError("act.name", act, _NOT_APPLIED.format(group="act", default=DEFAULT_ACT))
        super().__init__(build(target, kwargs), modules, key="model.modules")
        self.target, self.kwargs, self.d_out = target, dict(kwargs or {}), d_out

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        out, layers = super().forward_features(x)
        if self.d_out is not None and not (isinstance(out, Tensor) and out.dim() == 2 and out.shape[1] == self.d_out):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError("model.kwargs", self.kwargs, f"the model of {self.target} returns {shape} for a batch of "
                              f"{len(x)}, not (n, data.n_classes = {self.d_out}) logits; pass the class count to the "
                              "factory (e.g. num_classes)")
        return out, layers


def initialise(model: nn.Module, scheme: str, *, gain: float = 1.0, generator: torch.Generator | None = None,
               zero_bias: bool = False) -> nn.Module:
    """The engine's ``init`` of any model: :func:`~bnexp.nn.init.init_weights`, except that a :class:`CustomModel`
    under ``torch_default`` keeps the factory's weights (only ``zero_bias`` applies; ``gain`` must be 1)."""
    if scheme != "torch_default" or not isinstance(model, CustomModel):
        return init_weights(model, scheme, gain=gain, generator=generator, zero_bias=zero_bias)
    if gain != 1.0:
        raise ConfigError("init.gain", gain, "1 with model=custom and init=torch_default (the factory's own weights "
                          "are kept); choose another init.name to redraw the weights with a gain")
    if zero_bias:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, _INITIALISED) and module.bias is not None:
                    module.bias.zero_()
    return model


def layers_bound(layers: object) -> int:
    """A lower bound on the hooked calls that ``probe.layers`` needs (``all``/``last``: 1; a list: its largest index
    + 1); the count itself is known at the first probe, which checks the indices against it."""
    if isinstance(layers, str) and layers in ("all", "last"):
        return 1
    items = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else []
    if not items or not all(isinstance(i, Integral) and not isinstance(i, bool) and i >= 0 for i in items):
        raise ConfigError("probe.layers", layers, "all, last, or a non-empty list of indices ≥ 0 of the hooked calls "
                          "(model=custom: checked against their count at the first probe)")
    return max(int(i) for i in items) + 1


def validate(cfg: DictConfig) -> None:
    """ConfigError for a ``model=custom`` config that cannot run: an unknown ``model.*`` key, a bad ``model.target``
    or ``model.kwargs``, ``model.modules`` that match nothing, a non-default ``norm``/``act``, ``init.gain`` ≠ 1 with
    ``init=torch_default``, ``runtime.batch_seeds=true``.
    Builds the model once on the meta device."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    for key in options:
        if key not in KEYS:
            raise ConfigError(f"model.{key}", options[key], "not a key of model=custom (target, kwargs, modules): "
                              "the factory builds the model; pass its sizes through model.kwargs")
    if options.get("target") is None:
        raise ConfigError(TARGET, None, "required with model=custom: package.module:factory, e.g. "
                          "torchvision.models:resnet18")
    if (cfg.get("init") or {}).get("name") == "torch_default" and cfg.init.get("gain", 1.0) != 1.0:
        raise ConfigError("init.gain", cfg.init.gain, "1 with model=custom and init=torch_default (the factory's own "
                          "weights are kept); choose another init.name to redraw the weights with a gain")
    if ((cfg.get("runtime") or {}).get("batch_seeds", "auto")) is True:
        raise ConfigError("runtime.batch_seeds", True, "auto or false with model=custom (its seeds are probed one "
                          "at a time)")
    norm = OmegaConf.to_container(cfg.norm, resolve=True)
    options.pop("name")
    with torch.device("meta"):
        CustomModel(norm=norm.pop("name", None), act=cfg.act.get("name"), norm_kwargs=norm or None, **options)

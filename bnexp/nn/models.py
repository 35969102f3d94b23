"""The models a config names (``model.name``): one registry over every architecture of :mod:`bnexp.nn`.

A new architecture is a module of its own in this package (an ``nn.Module`` taking ``d_in``, ``d_out``, ``norm``,
``act`` and its sizes, with ``weight_layers()`` and, for the probe, ``forward(x, layers=...)``) and one entry here.
``custom`` is any importable factory's model, hooked for the probe (:mod:`bnexp.nn.custom`).

What the network engine asks of a model class before it builds one (the model contract on a run's config), each
with its default here, so that no caller names a model:

* ``check_config(cfg)`` (static method): ``ConfigError`` for a config the model cannot be built from, before any
  run. Default :func:`~bnexp.nn.mlp.check_sizes` (``model.depth``, ``model.width`` ≥ 1); attention adds its heads
  and activation, custom its target, kwargs, modules, norm, act and init;
* ``feature_layers(cfg)`` (static method): how many entries ``forward_features`` returns. Default ``model.depth``
  plus the class's ``EXTRA_FEATURE_LAYERS`` (VGG, ResNet: the pooled features; AlexNetDeep: its stem too);
  custom gives a lower bound, its hooked calls being counted at the first probe;
* ``BATCH_SEEDS`` (class attribute): whether init-time seeds may be probed together in vmapped passes (default
  True; custom: False, one model at a time);
* ``NORM_FROM_CONFIG`` (class attribute): whether the model's norm layers are the config's ``norm`` (default True;
  custom: False, the factory builds its own), so that the batch-size rules of a batch norm apply.
"""

from __future__ import annotations

import difflib
import inspect

from omegaconf import DictConfig
from torch import nn

from bnexp.errors import ConfigError
from bnexp.nn.alexnet import AlexNetDeep
from bnexp.nn.attention import SelfAttentionNet
from bnexp.nn.convnet import ConvNet
from bnexp.nn.custom import CustomModel
from bnexp.nn.mlp import MLP, ResidualMLP, check_sizes
from bnexp.nn.registry import Registry
from bnexp.nn.resblock import ResBlockMLP
from bnexp.nn.resnet import ResNet
from bnexp.nn.vgg import VGG

# Config ``model.name`` → constructor.
MODELS: Registry[type[nn.Module]] = Registry("model.name", {
    "mlp": MLP, "resmlp": ResidualMLP, "convnet": ConvNet, "vgg": VGG, "resnet": ResNet,
    "resblock": ResBlockMLP, "alexnet_deep": AlexNetDeep, "attention": SelfAttentionNet,
    "custom": CustomModel,
})


def build_model(name: str, **kwargs) -> nn.Module:
    """``MODELS[name](**kwargs)``; unknown ``name`` raises ``ConfigError("model.name", ...)``."""
    return MODELS.get(name)(**kwargs)


# What the engine passes to every model constructor itself (from the data, ``norm`` and ``act``), not model.* keys.
ENGINE_ARGS = ("d_in", "d_out", "norm", "act", "norm_kwargs")


def check_config(cfg: DictConfig) -> None:
    """The model's ``check_config(cfg)``, else :func:`~bnexp.nn.mlp.check_sizes`; then every ``model.*`` key must
    be a keyword of the model's constructor (a misspelt ``+model.dpeth=8`` is refused here, naming the closest
    key, not as a TypeError when the model is built). An unknown ``model.name`` raises ``ConfigError("model.name",
    ...)``."""
    cls = MODELS.get(cfg.model.get("name"))
    getattr(cls, "check_config", check_sizes)(cfg)
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    keys = [p.name for p in params if p.name not in ENGINE_ARGS]
    for key in cfg.model:
        if key != "name" and key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f"did you mean model.{close[0]}? " if close else ""
            raise ConfigError(f"model.{key}", cfg.model[key], f"not a key of model={cfg.model.name}: {hint}its keys "
                              f"are {', '.join(keys)}")


def feature_layers(cfg: DictConfig) -> int:
    """How many entries the model's ``forward_features`` returns: its ``feature_layers(cfg)``, else ``model.depth``
    plus its ``EXTRA_FEATURE_LAYERS`` (0 unless set)."""
    cls = MODELS.get(cfg.model.name)
    if (own := getattr(cls, "feature_layers", None)) is not None:
        return own(cfg)
    return int(cfg.model.depth) + getattr(cls, "EXTRA_FEATURE_LAYERS", 0)


def batches_seeds(name: str) -> bool:
    """Whether model ``name``'s init-time seeds may be probed together in vmapped passes (``BATCH_SEEDS``)."""
    return getattr(MODELS.get(name), "BATCH_SEEDS", True)


def norm_from_config(name: str) -> bool:
    """Whether model ``name`` builds its norm layers from the config's ``norm`` (``NORM_FROM_CONFIG``)."""
    return getattr(MODELS.get(name), "NORM_FROM_CONFIG", True)

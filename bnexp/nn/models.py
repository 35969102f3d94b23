"""The models a config names (``model.name``): one registry over every architecture of :mod:`bnexp.nn`.

A new architecture is a module of its own in this package (an ``nn.Module`` taking ``d_in``, ``d_out``, ``norm``,
``act`` and its sizes, with ``weight_layers()`` and, for the probe, ``forward(x, layers=...)``) and one entry here.
``custom`` is any importable factory's model, hooked for the probe (:mod:`bnexp.nn.custom`).
"""

from __future__ import annotations

from torch import nn

from bnexp.nn.alexnet import AlexNetDeep
from bnexp.nn.attention import SelfAttentionNet
from bnexp.nn.convnet import ConvNet
from bnexp.nn.custom import CustomModel
from bnexp.nn.mlp import MLP, ResidualMLP
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

"""Building blocks: normalisation variants, activations, initialisations, MLPs, a plain ConvNet, VGG and ResNet.

Every choice a config makes by name goes through one kind of registry (``bnexp.nn.registry.Registry``):
``NORMS`` (``norm.name``), ``ACTIVATIONS`` (``act.name``), ``INITS`` (``init.name``), ``MODELS``
(``model.name``); an unknown name raises ``ConfigError`` naming the key and the valid choices. Models take the
norm and activation as factories (``norm_layer(name, ...)``: features → module, ``act_layer(name)``: gain →
module), as timm injects ``norm_layer``/``act_layer``, or by name. ``is_norm(module)`` / ``NORM_TYPES`` say
which modules normalise; ``weight_normalize`` (``norm=weightnorm``, :mod:`bnexp.nn.weight_norm`) reparametrizes a
model's weights as W = g·V/‖V‖ and ``trained_weight`` gives the tensor trained behind each W.
"""

from bnexp.nn.activations import ACTIVATIONS, Activation, ActLayer, act_layer, gain_schedule, make_activation
from bnexp.nn.convnet import ConvNet
from bnexp.nn.init import INITS, init_weights
from bnexp.nn.mlp import MLP, ResidualMLP
from bnexp.nn.models import MODELS, build_model
from bnexp.nn.norms import (
    NORM_TYPES,
    NORMS,
    BatchNormCenter,
    BatchNormNoCenter,
    BatchNormTheory,
    GroupNorm,
    LayerNorm,
    NormLayer,
    RMSNorm,
    batch_statistics,
    is_norm,
    make_norm,
    norm_layer,
    reparametrization,
)
from bnexp.nn.registry import Registry
from bnexp.nn.resnet import ResNet
from bnexp.nn.vgg import VGG
from bnexp.nn.weight_norm import trained_weight, weight_normalize

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "MODELS",
    "NORMS",
    "NORM_TYPES",
    "VGG",
    "ActLayer",
    "Activation",
    "BatchNormCenter",
    "BatchNormNoCenter",
    "BatchNormTheory",
    "ConvNet",
    "GroupNorm",
    "LayerNorm",
    "NormLayer",
    "RMSNorm",
    "Registry",
    "ResNet",
    "ResidualMLP",
    "act_layer",
    "batch_statistics",
    "build_model",
    "gain_schedule",
    "init_weights",
    "is_norm",
    "make_activation",
    "make_norm",
    "norm_layer",
    "reparametrization",
    "trained_weight",
    "weight_normalize",
]

"""Building blocks: normalisation variants, activations, initialisations, MLPs, a plain ConvNet, VGG and ResNet.

Models take the norm and activation by config name; each registry (``NORMS``, ``ACTIVATIONS``,
``INITS``, ``MODELS``) maps those names to constructors and lists the valid choices in its errors.
"""

from bnexp.nn.activations import ACTIVATIONS, Activation, gain_schedule, make_activation
from bnexp.nn.convnet import ConvNet
from bnexp.nn.init import INITS, init_weights
from bnexp.nn.mlp import MLP, MODELS, ResidualMLP, build_model
from bnexp.nn.norms import NORMS, BatchNormCenter, BatchNormNoCenter, BatchNormTheory, make_norm
from bnexp.nn.resnet import ResNet
from bnexp.nn.vgg import VGG

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "MODELS",
    "NORMS",
    "VGG",
    "Activation",
    "BatchNormCenter",
    "BatchNormNoCenter",
    "BatchNormTheory",
    "ConvNet",
    "ResNet",
    "ResidualMLP",
    "build_model",
    "gain_schedule",
    "init_weights",
    "make_activation",
    "make_norm",
]

"""The model contract of ``bnexp.nn.models`` over every model config: ``feature_layers(cfg)`` is what the built
model's ``forward_features`` returns (a lower bound for ``custom``, whose hooked calls are counted at the first
probe), a bad size is refused before any run by ``check_config`` with a ConfigError naming the key, and
``batches_seeds`` says whether init-time seeds may share vmapped passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bnexp import config, data
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MODELS, models

CONFIGS = Path(config.__file__).resolve().parent.parent / "configs" / "model"
# Model configs at paper size (vgg19, resnet50) are the mini ones' classes with more layers; these stand for them.
PAPER_SIZE = {"vgg19", "resnet50"}
IMAGES = ["data=prototypes", "data.shape=[3,16,16]"]
OVERRIDES = {  # what each model needs of the data (or of itself) to build small
    "convnet": IMAGES, "vgg_mini": IMAGES, "resnet_mini": IMAGES,
    "alexnet_deep": ["data=uniform_images"],
    "attention": ["act=linear"],
    "custom": [*IMAGES, "model.target=torchvision.models:resnet18", "model.kwargs={num_classes:10}"],
}
NAMES = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem not in PAPER_SIZE)


def compose(name: str, *extra: str):
    return config.compose("train", [f"model={name}", "optim.epochs=0", "data.batch_size=8", "runtime.progress=false",
                                    *OVERRIDES.get(name, []), *extra])


def test_the_configs_cover_the_registry():
    assert {compose(name).model.name for name in NAMES} == set(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_feature_layers_is_what_forward_features_returns(name):
    cfg = compose(name)
    train.validate(cfg)
    x, y, *_ = data.make_dataset(cfg.data, 0, "cpu", torch.float64)
    model = train.make_model(cfg, d_in=x[0].numel(), n_classes=int(y.max()) + 1, seed=0).eval()
    with torch.no_grad():
        _, layers = model.forward_features(x[:8])
    if getattr(MODELS.get(cfg.model.name), "feature_layers", None) is None:
        assert models.feature_layers(cfg) == len(layers)
    else:  # custom: a bound from probe.layers, the count is the hooked calls'
        assert 1 <= models.feature_layers(cfg) <= len(layers)
    assert models.batches_seeds(cfg.model.name) is (cfg.model.name != "custom")


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_size_is_refused_naming_the_key(name):
    """``model.depth=0``: out of range for a model sized by the config, not a key of custom's (its factory sizes it)."""
    with pytest.raises(ConfigError, match=r"model\.depth"):
        models.check_config(compose(name, "+model.depth=0" if name == "custom" else "model.depth=0"))


@pytest.mark.parametrize("name", NAMES)
def test_a_misspelt_key_is_refused_naming_the_closest(name):
    """``+model.dpeth=8``: refused before any model is built (not a TypeError from its constructor)."""
    with pytest.raises(ConfigError, match=r"model\.dpeth") as err:
        models.check_config(compose(name, "+model.dpeth=8"))
    if name != "custom":  # custom: its own message (the factory builds the model; sizes go in model.kwargs)
        assert "did you mean model.depth?" in str(err.value)

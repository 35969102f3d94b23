"""Any ``nn.Module`` under the model contract of the probe and the trainer: ``Hooked(model, modules)``.

bnexp's own models hand the probe their hidden representations through ``forward_features(x)`` → ``(logits,
layers)`` and their weight matrices through ``weight_layers()`` (:mod:`bnexp.nn.mlp`). :class:`Hooked` gives any
model that contract through forward hooks on chosen modules:

* ``forward(x)`` is the model's own forward; no hook is registered outside ``forward_features``, so training runs
  at the model's own speed.
* ``forward_features(x)``: one forward of the model with hooks on the chosen modules. ``layers[ℓ]`` is the ℓ-th
  hooked *call*, in the order the calls return (a module called twice in one forward — torchvision's BasicBlock
  calls its ReLU twice — gives two layers; ``layer_names`` holds the qualified names of the last pass, the
  second call of ``name`` as ``name#2``). Each layer is ``{"pre": input, "norm": output, "post": output}``, every
  tensor flattened per sample: ``(n, *shape) → (n, prod(shape))``, so a conv map ``(n, C, H, W)`` is measured as
  the ``(n, C·H·W)`` matrix, as the rank paper measures VGG's features (dim 0 is always the sample). ``"pre"`` is
  the module's first positional tensor argument (its output when it has none), copied before the call (an
  in-place activation overwrites its input); the output (the first tensor of a tuple output) is copied at the
  call, so that a later in-place operation (``ReLU(inplace=True)`` after a hooked norm) cannot change it. The
  copies stay in the autograd graph (pre-training differentiates through them).
* ``weight_layers()``: every module with a ≥ 2-D ``weight`` parameter (Linear, Conv, Embedding, …) in
  ``model.modules()`` order; the probe's ``grad_norm`` rows are their gradient norms ‖∂loss/∂W_k‖_F.

Which modules (``modules``): module types (classes, e.g. ``nn.ReLU``; or strings ``"nn.ReLU"``, ``"torch.nn.ReLU"``,
``"package.module:Class"``), qualified module names (``"layer1"``, ``"features.3"``), or a list mixing both; the
chosen modules are those named plus every module that is an instance of a listed type. ``None`` or ``"default"``:
every activation module (:data:`ACTIVATION_TYPES`: torch's elementwise activations, ``nn.ReLU`` … ``nn.GELU``, and
bnexp's ``Activation``). A name not in the model, a type that matches nothing, or a selection that matches no
module raises :class:`ConfigError` naming ``key`` (``modules``; ``model.modules`` in a config).
"""

from __future__ import annotations

import difflib
import importlib
from collections import Counter
from collections.abc import Sequence

from torch import Tensor, nn

from bnexp.errors import ConfigError
from bnexp.nn.activations import Activation

__all__ = ["ACTIVATION_TYPES", "Hooked", "select_modules", "weight_modules"]

_NOT_ELEMENTWISE = (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d)
# The default selection: torch's activation modules that act elementwise, and bnexp's σ(α x).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (*(
    cls for cls in vars(nn.modules.activation).values()
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == nn.modules.activation.__name__
    and not issubclass(cls, _NOT_ELEMENTWISE)), Activation)

ModuleSpec = str | type | Sequence[str | type] | None
SHOWN = 12  # module names an error lists


def _names_hint(named: dict[str, nn.Module], wanted: str | None = None) -> str:
    """Some of the model's module names (and the closest to ``wanted``), for an error message."""
    names = [n for n in named if n]
    close = difflib.get_close_matches(wanted, names, n=3) if wanted else []
    shown = ", ".join(names[:SHOWN]) + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")
    return (f"did you mean {' or '.join(close)}? " if close else "") + f"the model's modules include: {shown}"


def _module_type(text: str, key: str) -> type[nn.Module]:
    """``"nn.ReLU"`` / ``"torch.nn.ReLU"`` (a class of torch.nn) or ``"package.module:Class"`` as the class."""
    where, _, name = text.rpartition(":") if ":" in text else ("torch.nn", "", text.split(".")[-1])
    try:
        cls = getattr(importlib.import_module(where), name, None)
    except ImportError as err:
        raise ConfigError(key, text, f"module {where!r} does not import: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(key, text, f"{where}.{name} is not an nn.Module class")
    return cls


def select_modules(model: nn.Module, modules: ModuleSpec = None, key: str = "modules") -> list[tuple[str, nn.Module]]:
    """``[(qualified name, module)]`` chosen by ``modules`` (module docstring), in ``model.named_modules()`` order.

    A string is a module name when the model has a module of that name; else ``nn.X``, ``torch.nn.X`` and
    ``package.module:X`` are types. The model itself (name ``""``) is never chosen.
    """
    named = dict(model.named_modules())
    if modules is None or (isinstance(modules, str) and modules == "default"):
        chosen = [(n, m) for n, m in named.items() if n and isinstance(m, ACTIVATION_TYPES)]
        if not chosen:
            raise ConfigError(key, "default", "the model has no activation module (nn.ReLU, nn.GELU, …; a functional "
                              "F.relu cannot be hooked): name module types or names, e.g. [nn.Conv2d]; "
                              + _names_hint(named))
        return chosen
    entries = [modules] if isinstance(modules, (str, type)) else list(modules)
    if not entries:
        raise ConfigError(key, modules, "a module type, a module name, or a non-empty list of them")
    names: set[str] = set()
    types: dict[type[nn.Module], object] = {}  # type → the entry that named it
    for entry in entries:
        if isinstance(entry, type) and issubclass(entry, nn.Module):
            types[entry] = entry
        elif isinstance(entry, str) and entry and entry in named:
            names.add(entry)
        elif isinstance(entry, str) and (":" in entry or entry.startswith(("nn.", "torch.nn."))):
            types[_module_type(entry, key)] = entry
        else:
            raise ConfigError(key, entry, "not a module of the model (a qualified name as model.named_modules() "
                              "gives it, or a type: nn.ReLU, 'nn.Conv2d', 'package.module:Class'); "
                              + _names_hint(named, entry if isinstance(entry, str) else None))
    for cls, entry in types.items():
        if not any(isinstance(m, cls) for n, m in named.items() if n):
            raise ConfigError(key, entry, f"no module of the model is a {cls.__name__}; " + _names_hint(named))
    return [(n, m) for n, m in named.items() if n and (n in names or isinstance(m, tuple(types)))]


def weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(qualified name, module)]`` of every module with a ≥ 2-D ``weight`` parameter, in ``modules()`` order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2]


def _first_tensor(value, name: str, what: str) -> Tensor:
    """``value`` if a tensor, else the first tensor of a tuple/list; TypeError naming the module otherwise."""
    if isinstance(value, Tensor):
        return value
    found = next((v for v in value if isinstance(v, Tensor)), None) if isinstance(value, (tuple, list)) else None
    if found is None:
        raise TypeError(f"hooked module {name!r}: its {what} is {type(value).__name__}, not a tensor; hook a module "
                        "that takes and returns tensors")
    return found


def _per_sample(h: Tensor) -> Tensor:
    """``(n, *shape) → (n, prod(shape))``, a copy (so later in-place operations leave it as it was)."""
    return (h.flatten(1) if h.dim() > 1 else h[:, None]).clone()


class Hooked(nn.Module):
    """``model`` with ``forward_features`` on the modules chosen by ``modules`` and ``weight_layers`` (module
    docstring). The wrapper takes the model's mode as it is (no ``train()`` call: a model whose norms are frozen in
    eval mode stays so); parameters and buffers are the model's own."""

    def __init__(self, model: nn.Module, modules: ModuleSpec = None, *, key: str = "modules"):
        super().__init__()
        self.model = model
        self.hooked = select_modules(model, modules, key)
        self.training = model.training
        self.layer_names: list[str] = []  # the hooked calls of the last forward_features, in order

    def forward(self, x: Tensor):
        return self.model(x)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(model(x), layers)`` in one pass; ``layers[ℓ]`` = {"pre", "norm", "post"} of hooked call ℓ."""
        layers: list[dict[str, Tensor]] = []
        names: list[str] = []
        calls: Counter[str] = Counter()
        inputs: dict[int, list[Tensor]] = {}  # per module, a stack (a module may call itself)

        def before(name: str, module: nn.Module, args: tuple) -> None:
            tensor = next((a for a in args if isinstance(a, Tensor)), None)
            inputs.setdefault(id(module), []).append(_per_sample(tensor) if tensor is not None else None)

        def after(name: str, module: nn.Module, args: tuple, output) -> None:
            post = _per_sample(_first_tensor(output, name, "output"))
            pre = inputs[id(module)].pop()
            layers.append({"pre": post if pre is None else pre, "norm": post, "post": post})
            calls[name] += 1
            names.append(name if calls[name] == 1 else f"{name}#{calls[name]}")

        handles = []
        try:
            for name, module in self.hooked:
                handles.append(module.register_forward_pre_hook(lambda m, a, name=name: before(name, m, a)))
                handles.append(module.register_forward_hook(lambda m, a, o, name=name: after(name, m, a, o)))
            out = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        self.layer_names = names
        return out, layers

    def weight_layers(self) -> list[nn.Module]:
        """Every module of the model with a ≥ 2-D ``weight`` parameter, in ``model.modules()`` order."""
        return [m for _, m in weight_modules(self.model)]

    def weight_names(self) -> list[str]:
        """The qualified names (in the wrapped model) of :meth:`weight_layers`."""
        return [n for n, _ in weight_modules(self.model)]

    def module_names(self) -> dict[str, list[str]]:
        """What a probe row's ``layer`` index stands for: ``{"layers": layer_names, "weights": weight_names()}``
        (``layers`` from the last ``forward_features``; ``weights``: the ``grad_norm`` rows' weight layers). A
        run of ``model=custom`` notes it in run.json as ``modules``."""
        return {"layers": list(self.layer_names), "weights": self.weight_names()}

    def extra_repr(self) -> str:
        return f"hooked={[n for n, _ in self.hooked]}"

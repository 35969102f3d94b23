"""VGG for CIFAR: the rank paper's VGG19 (its ``vgg_for_cifar_w_multiple_BN_options.py``) and smaller stacks.

A conv stack described by ``cfg`` — a list of output channel counts (one 3×3 conv each) and ``"M"``
(2×2 max-pool, stride 2) — followed by a fully connected classifier::

    for every c in cfg:   x = σ(norm(conv3×3(x)))        # c channels, padding 1, conv bias (``bias``)
    for every "M":        x = maxpool2×2(x)              # halves H and W (floor)
    f = flatten(x)                                       # (n, C·H'·W'): the "last hidden layer" for rank
    logits = fc_3(σ(fc_2(drop(σ(fc_1(drop(f)))))))      # fc_1: C·H'·W' → hidden, fc_2: hidden → hidden,
                                                         # fc_3: hidden → d_out; no norm in the classifier

Named configs (``cfg``):

* ``"E"`` = VGG19 = ``[64,64,M,128,128,M,256,256,256,256,M,512,512,512,512,M,512,512,512,512,M]``: 16 convs, five
  pools, so a 3×32×32 CIFAR image ends as a 512×1×1 map and ``f`` is 512-d; with the classifier (hidden 512)
  that is 19 weight layers.
* ``"mini"`` = ``[16,16,M,32,32,M,64,64,M]``: the spec's quick "VGG-mini" (6 convs; 3×16×16 → 64×2×2, f 256-d).
* an explicit list of positive ints and ``"M"``;
* ``None`` (the constructor default, for sweeps over depth and width): ``[width] * depth``, a plain stride-1
  stack without pooling.

``width`` and ``depth``: the trainer always passes both (it validates them and uses them for thread and
memory heuristics), so for VGG they *describe* the conv stack instead of being free: ``depth`` is the number
of conv layers (16 for ``E``) and ``width`` the channels of the last conv layer (512 for ``E``, so that
``width`` is the per-position size of ``f``). A named or explicit ``cfg`` must agree with both — a mismatch
raises :class:`ConfigError` naming ``model.depth`` / ``model.width`` and the value the cfg implies — so an
override of ``model.cfg`` cannot silently run a different network than the config file says.

Norm placement is the spec's (§0.5): conv → norm → activation; ``norm="none"`` is the vanilla VGG. The
classifier uses the same activation and never a norm; its Dropout layers are identities when ``dropout`` is 0
(the constructor default, so that ``forward`` is deterministic; the VGG19 config sets the paper's 0.5).
Linear layers always carry a bias (as in the reference code); ``bias`` only switches the conv biases.

``forward_features`` returns ``depth + 1`` layers: layer ℓ < depth is conv ℓ with ``"pre"`` = conv output,
``"norm"`` = norm output, ``"post"`` = activation output (before any following pool), each flattened to
``(n, C·H·W)``; the last layer (index ``depth``) is ``f``, the flattened output of the last pool, in all three
keys (it has no pre/post split). The classifier's hidden layers are not recorded: they sit behind dropout,
and the spec (§5 item 13) takes the conv features as the "last hidden layer". With ``d_out=None`` there is no
classifier and ``forward`` returns ``f``.
"""

from __future__ import annotations

import math
from numbers import Integral

from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int, check_number
from bnexp.nn.activations import ActLayer, act_layer
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["CFGS", "VGG", "resolve_cfg"]

POOL = "M"

# Named conv stacks: channel counts of the 3×3 convs and "M" for a 2×2 max-pool.
CFGS: dict[str, list[int | str]] = {
    "E": [64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL],
    "mini": [16, 16, POOL, 32, 32, POOL, 64, 64, POOL],
}
CFG_CHOICES = f"one of {', '.join(CFGS)}, or a list of positive ints (conv channels) and '{POOL}'"


def resolve_cfg(cfg: str | list | tuple | None, width: int, depth: int) -> list[int | str]:
    """The conv stack ``cfg`` names as a list of channel counts and ``"M"``; ``None`` gives ``[width] * depth``.

    Raises :class:`ConfigError` for ``model.cfg`` when the name is unknown or an entry is neither a positive int
    nor ``"M"``, or the list has no conv; for ``model.depth`` / ``model.width`` when they disagree with it.
    """
    if cfg is None:
        return [width] * depth
    if isinstance(cfg, str):
        if cfg not in CFGS:
            raise ConfigError("model.cfg", cfg, CFG_CHOICES)
        plan = list(CFGS[cfg])
    elif isinstance(cfg, (list, tuple)):
        plan = list(cfg)
    else:
        raise ConfigError("model.cfg", cfg, CFG_CHOICES)
    for item in plan:
        if item != POOL and (isinstance(item, bool) or not isinstance(item, Integral) or item < 1):
            raise ConfigError("model.cfg", cfg, f"entries must be positive ints (conv channels) or '{POOL}'; "
                              f"got {item!r}")
    channels = [int(c) for c in plan if c != POOL]
    if not channels:
        raise ConfigError("model.cfg", cfg, "needs at least one conv layer (a positive int)")
    if depth != len(channels):
        raise ConfigError("model.depth", depth, f"must equal the number of conv layers of model.cfg={cfg!r}, "
                          f"i.e. {len(channels)}")
    if width != channels[-1]:
        raise ConfigError("model.width", width, f"must equal the channels of the last conv layer of "
                          f"model.cfg={cfg!r}, i.e. {channels[-1]}")
    return [c if c == POOL else int(c) for c in plan]


class VGG(nn.Module):
    """VGG conv stack ``cfg`` plus the three-layer classifier (see the module docstring); input (n, C, H, W).

    ``d_in`` (the flattened input size the trainer passes) must be ``in_channels · H · W``; with pooling the
    images must be square (H = W = sqrt(d_in / in_channels)) so that the flattened feature size is known at
    construction. ``weight_layers()`` = [conv_0, …, conv_{depth−1}, fc_1, fc_2, fc_3] (19 for VGG19).
    """

    # forward_features has depth + 1 entries: the last is the pooled features (the "last hidden layer"), so
    # probe.layers may name indices up to model.depth
    EXTRA_FEATURE_LAYERS = 1

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int | None = None,
        *,
        cfg: str | list | None = None,
        in_channels: int = 3,
        norm: str | NormLayer = "bn_torch",
        act: str | ActLayer = "relu",
        bias: bool = True,
        hidden: int = 512,
        dropout: float = 0.0,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        for key, value in (("model.d_in", d_in), ("model.width", width), ("model.depth", depth),
                           ("model.in_channels", in_channels), ("model.hidden", hidden)):
            check_int(key, value, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        check_number("model.dropout", dropout, 0.0, 1.0)
        if d_in % in_channels:
            raise ConfigError("model.in_channels", in_channels,
                              f"must divide the input size {d_in} (inputs are (n, in_channels, H, W))")
        self.plan = resolve_cfg(cfg, width, depth)
        self.in_channels, self.d_in = in_channels, d_in

        # The flattened feature size: pooling floors H and W, so it depends on the image side, which only a
        # square image determines from d_in. Computing it here (not lazily) keeps the model an ordinary module
        # whose weights init_weights can redraw and functional_call can replace.
        area = d_in // in_channels
        pools = self.plan.count(POOL)
        if pools:
            side = math.isqrt(area)
            if side * side != area:
                raise ConfigError("model.in_channels", in_channels,
                                  f"inputs of {d_in} values must be square images: d_in / in_channels = {area} "
                                  "is not a square (needed to size the classifier after pooling)")
            final = side
            for _ in range(pools):
                final //= 2
            if final < 1:
                raise ConfigError("model.cfg", cfg, f"its {pools} 2×2 max-pools shrink {side}×{side} images "
                                  "below 1×1")
            area = final * final

        convs, c_in = [], in_channels
        for item in self.plan:
            if item != POOL:
                convs.append(nn.Conv2d(c_in, item, 3, padding=1, bias=bias))
                c_in = item
        self.conv = nn.ModuleList(convs)
        make_norm = norm_layer(norm, spatial=True, **(norm_kwargs or {}))
        self.norm = nn.ModuleList(make_norm(c.out_channels) for c in convs)
        self.pool = nn.MaxPool2d(2, 2)
        self.act = act_layer(act)(1.0)
        self.features_dim = c_in * area
        if d_out is not None:
            # Dropout(0) would still draw no numbers, but Identity keeps the model free of random ops (vmap).
            self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.fc1 = nn.Linear(self.features_dim, hidden)
            self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.fc2 = nn.Linear(hidden, hidden)
            self.readout = nn.Linear(hidden, d_out)
        else:
            self.drop1 = self.fc1 = self.drop2 = self.fc2 = self.readout = None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x[0].numel() != self.d_in:
            raise ValueError(f"expected images (n, {self.in_channels}, H, W) with {self.d_in} values each, "
                             f"got shape {tuple(x.shape)}")
        index = 0
        for item in self.plan:
            if item == POOL:
                x = self.pool(x)
                continue
            h = self.conv[index](x)
            z = self.norm[index](h)
            x = self.act(z)
            index += 1
            if layers is not None:
                layers.append({"pre": h.flatten(1), "norm": z.flatten(1), "post": x.flatten(1)})
        f = x.flatten(1)  # (n, C·H'·W'): 512-d for VGG19 on 32×32
        if layers is not None:
            layers.append({"pre": f, "norm": f, "post": f})
        if self.readout is None:
            return f
        h = self.act(self.fc1(self.drop1(f)))
        h = self.act(self.fc2(self.drop2(h)))
        return self.readout(h)

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(forward(x), layers)`` in one pass: layers 0 … depth−1 the convs' flattened {"pre", "norm", "post"},
        layer ``depth`` the flattened pooled features ``f`` (the same tensor in all three keys)."""
        layers: list[dict[str, Tensor]] = []
        return self._forward(x, layers), layers

    def weight_layers(self) -> list[nn.Module]:
        """[conv_0, …, conv_{depth−1}, fc_1, fc_2, fc_3] (the classifier only when ``d_out`` is set)."""
        head = [self.fc1, self.fc2, self.readout] if self.readout is not None else []
        return [*self.conv, *head]

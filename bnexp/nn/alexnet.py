"""The ortho paper's deep AlexNet-like CIFAR convnet (its Table 3, Fig 7), as its code ``AlexNet(10, num_layers,
level=3, withbn=False)`` ran it (spec ortho §3 "002 Fig 7 + Table 3")::

    Conv2d(3, 64, 3, stride=2, padding=1)  → MaxPool2d(2) → σ        # 32 → 16 → 8
    Conv2d(64, 192, 3, padding=1)          → MaxPool2d(2) → σ        # 8 → 4
    Conv2d(192, 192, 3, padding=1)         → σ                       # in the code, not in Table 3
    Conv2d(192, 256, 3, padding=1)
    Conv2d(256, 256, 3, padding=1)         → σ
    {Conv2d(256, 256, 3, padding=1)        → σ → norm} × depth       # depth = num_layers ∈ {15, 75}
    MaxPool2d(2) → σ → flatten f                                     # 4 → 2: 256·2·2 = 1024 on 32×32 images
    logits = fc_3(σ(fc_2(drop(σ(fc_1(drop(f)))))))                   # 1024 → 4096 → 4096 → d_out

so the net has 5 + depth convolutions (20 and 80 in the paper). Every conv and linear has a bias, zero at
construction (the code's init; :func:`bnexp.nn.init_weights` redraws weights only, so biases stay 0). The
stride 2 of the first conv is what makes the flatten 1024 (without it, 4096). ``norm`` sits after the
activation in the repeated blocks only, where the code's ``withbn`` option puts its BatchNorm2d; Fig 7 is
``norm="none"`` (the default). Dropout p = ``dropout`` (the code's 0.5; Identity at 0) is active in train mode,
as in the code, which trains in train mode throughout.

``width`` and ``depth``: the trainer always passes both, so ``width`` *describes* the net and must be 256 (the
channels of the repeated convs, a :class:`ConfigError` otherwise); ``depth`` is the number of repeated blocks.
Images must be square with side ≥ 15 (each of the three pools needs at least 2×2); the flatten size is
256·s², s = ⌊⌊⌊⌈side/2⌉/2⌋/2⌋/2⌋.

``forward_features`` returns 5 + depth + 1 layers (``EXTRA_FEATURE_LAYERS`` = 6): layer i < 5 + depth is conv i
with ``"pre"`` = its output, ``"norm"`` = the output of its norm (the repeated blocks; ``"pre"`` for the first five
convs, which have none) and ``"post"`` = what enters the next unit (conv i + 1, or the final pool), each flattened
to ``(n, C·H·W)``; the last layer is ``f`` in all three keys. The classifier's hidden layers sit behind dropout
and are not recorded (as in :class:`bnexp.nn.VGG`). With ``d_out=None`` there is no classifier and ``forward``
returns ``f``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int, check_number
from bnexp.nn.activations import ActLayer, act_layer
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["AlexNetDeep"]

# (in, out, stride) of the five convolutions before the repeated blocks, as the code builds them
STEM = ((3, 64, 2), (64, 192, 1), (192, 192, 1), (192, 256, 1), (256, 256, 1))
CHANNELS = 256  # of the repeated convs and the last feature map
HIDDEN = 4096  # classifier hidden units


def flat_side(side: int) -> int:
    """The side of the last feature map: ⌈side/2⌉ after the stride-2 conv (padding 1, kernel 3), then three 2×2
    max-pools (floor)."""
    s = (side - 1) // 2 + 1
    for _ in range(3):
        s //= 2
    return s


class AlexNetDeep(nn.Module):
    """The ortho paper's Table 3 convnet with ``depth`` repeated 256-channel blocks (module docstring); input
    (n, in_channels, side, side). ``weight_layers()`` = [conv_0, …, conv_{4+depth}, fc_1, fc_2, fc_3]."""

    # forward_features has 5 + depth + 1 entries: the five stem convs, the repeated blocks and the flattened f
    EXTRA_FEATURE_LAYERS = len(STEM) + 1

    def __init__(
        self,
        d_in: int,
        width: int = CHANNELS,
        depth: int = 15,
        d_out: int | None = None,
        *,
        in_channels: int = 3,
        norm: str | NormLayer = "none",
        act: str | ActLayer = "relu",
        dropout: float = 0.5,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        for key, value in (("model.d_in", d_in), ("model.width", width), ("model.depth", depth),
                           ("model.in_channels", in_channels)):
            check_int(key, value, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        check_number("model.dropout", dropout, 0.0, 1.0)
        if width != CHANNELS:
            raise ConfigError("model.width", width, f"must be {CHANNELS}: the channels of the repeated convs of "
                              "Table 3 (width only describes the net)")
        area, rest = divmod(d_in, in_channels)
        side = math.isqrt(area)
        if rest or side * side != area or flat_side(side) < 1:
            raise ConfigError("model.in_channels", in_channels, f"inputs of {d_in} values must be square "
                              "(in_channels, side, side) images with side >= 15 (the stride-2 conv and three 2×2 "
                              "max-pools; e.g. data.shape=[3,32,32])")
        self.in_channels, self.d_in = in_channels, d_in

        stem = [(in_channels, STEM[0][1], STEM[0][2]), *STEM[1:]]
        self.conv = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
            for c_in, c_out, stride in [*stem, *[(CHANNELS, CHANNELS, 1)] * depth]
        )
        make_norm = norm_layer(norm, spatial=True, **(norm_kwargs or {}))
        self.norm = nn.ModuleList(make_norm(CHANNELS) for _ in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.act = act_layer(act)(1.0)
        self.features_dim = CHANNELS * flat_side(side) ** 2
        if d_out is not None:
            self.drop1 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.fc1 = nn.Linear(self.features_dim, HIDDEN)
            self.drop2 = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.fc2 = nn.Linear(HIDDEN, HIDDEN)
            self.readout = nn.Linear(HIDDEN, d_out)
        else:
            self.drop1 = self.fc1 = self.drop2 = self.fc2 = self.readout = None
        for layer in self.weight_layers():
            nn.init.zeros_(layer.bias)  # the code's init: biases 0 (weights are redrawn by init_weights)

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x[0].numel() != self.d_in:
            raise ValueError(f"expected images (n, {self.in_channels}, H, W) with {self.d_in} values each, "
                             f"got shape {tuple(x.shape)}")
        for i, conv in enumerate(self.conv):
            z = h = conv(x)
            if i < 2:
                x = self.act(self.pool(h))  # the code's order: conv → max-pool → σ
            elif i == 3:
                x = h  # Conv(192, 256) feeds Conv(256, 256) directly
            elif i < len(STEM):
                x = self.act(h)
            else:
                z = x = self.norm[i - len(STEM)](self.act(h))  # withbn: the norm after σ
            if layers is not None:
                layers.append({"pre": h.flatten(1), "norm": z.flatten(1), "post": x.flatten(1)})
        f = self.act(self.pool(x)).flatten(1)  # (n, 1024) on 3×32×32 images
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
        """``(forward(x), layers)`` in one pass: layers 0 … 4+depth the convs' flattened {"pre", "norm", "post"},
        the last layer the flattened features ``f`` (the same tensor in all three keys)."""
        layers: list[dict[str, Tensor]] = []
        return self._forward(x, layers), layers

    def weight_layers(self) -> list[nn.Module]:
        """[conv_0, …, conv_{4+depth}, fc_1, fc_2, fc_3] (the classifier only when ``d_out`` is set)."""
        head = [self.fc1, self.fc2, self.readout] if self.readout is not None else []
        return [*self.conv, *head]

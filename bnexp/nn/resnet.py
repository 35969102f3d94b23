"""ResNet for CIFAR with bottleneck blocks: the rank papers' ResNet-50 (000 Fig 13, 001 Fig 7).

The papers' code has no ResNet; the spec (§0.5, §5 item 12) fixes the common CIFAR variant of He et al.
(2016): a 3×3 stem instead of the 7×7 stride-2 conv and max-pool (32×32 images are small), then stages of
bottleneck blocks::

    x = σ(norm(conv3×3(x)))                       # stem: in_channels → width, stride 1, no max-pool
    stage s = 0 … S−1 (planes p_s = width·2^s, output 4·p_s channels), blocks[s] bottleneck blocks:
        b = σ(norm₁(conv1×1(x)))                  # → p_s
        b = σ(norm₂(conv3×3(b, stride)))          # stride 2 in the first block of stages s ≥ 1, else 1
        b = norm₃(conv1×1(b))                     # → 4·p_s (expansion 4)
        x = σ(b + shortcut(x))                    # shortcut: identity, or norm(conv1×1(x, stride)) when the
                                                  # shape changes (the projection shortcut, "option B")
    f = mean over H, W of x                       # (n, 4·width·2^(S−1)): 2048-d for ResNet-50
    logits = fc(f)                                # f → d_out

Norm → activation placement is He et al.'s (conv → norm → σ inside the block; the sum, then σ); ``norm="none"``
drops every norm, the shortcut's included. ``blocks=[3, 4, 6, 3]`` with ``width=64`` is ResNet-50 (16 blocks,
3·16 + 2 = 50 layers on the main path, 4 projections, 54 weight layers in all); ``[1, 1]`` with width 16 is the
quick ``resnet_mini``.

``width`` and ``depth``: ``width`` is the stem's channel count (the stage widths follow from it); ``depth`` is
the number of bottleneck blocks, ``sum(blocks)`` (16 for ResNet-50), and must agree with ``blocks``
(:class:`ConfigError` naming ``model.depth`` otherwise). ``blocks=None`` (the constructor default, for depth
sweeps) is one stage of ``depth`` blocks. ``bias`` switches the conv biases (off by default: each conv feeds a
norm); the readout always has a bias.

``forward_features`` returns ``depth + 1`` layers: layer ℓ < depth is block ℓ with ``"pre"`` = the branch's last
conv output, ``"norm"`` = norm₃ of it, ``"post"`` = the block output, each flattened to ``(n, C·H·W)``; the last
layer (index ``depth``) is the pooled ``f`` in all three keys, the "last hidden layer" for rank. With
``d_out=None`` there is no readout and ``forward`` returns ``f``.
"""

from __future__ import annotations

from numbers import Integral

from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int
from bnexp.nn.activations import ActLayer, act_layer
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["Bottleneck", "ResNet"]

EXPANSION = 4


class Bottleneck(nn.Module):
    """One bottleneck block ``σ(norm₃(conv₃(σ(norm₂(conv₂(σ(norm₁(conv₁ x)))))) + shortcut(x))``.

    ``planes`` is the inner width, the output has ``EXPANSION · planes`` channels; ``stride`` sits on the 3×3
    conv (as torchvision's v1.5 and the usual CIFAR code). The shortcut is a 1×1 conv + norm when the stride
    or the channel count changes, else the identity.
    """

    def __init__(self, in_channels: int, planes: int, stride: int, *, norm_layer: NormLayer, act: nn.Module,
                 bias: bool):
        super().__init__()
        out = EXPANSION * planes
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=bias)
        self.norm1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=bias)
        self.norm2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=bias)
        self.norm3 = norm_layer(out)
        if stride != 1 or in_channels != out:
            self.proj = nn.Conv2d(in_channels, out, 1, stride=stride, bias=bias)
            self.proj_norm = norm_layer(out)
        else:
            self.proj = self.proj_norm = None
        self.act = act

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(conv₃ output, norm₃ output, block output)``."""
        b = self.act(self.norm1(self.conv1(x)))
        b = self.act(self.norm2(self.conv2(b)))
        h = self.conv3(b)
        z = self.norm3(h)
        skip = x if self.proj is None else self.proj_norm(self.proj(x))
        return h, z, self.act(z + skip)

    def weight_layers(self) -> list[nn.Module]:
        """[conv₁, conv₂, conv₃, projection (if any)]."""
        return [self.conv1, self.conv2, self.conv3, *([self.proj] if self.proj is not None else [])]


def _check_blocks(blocks, depth: int) -> list[int]:
    if blocks is None:
        return [depth]
    if (isinstance(blocks, (str, bytes)) or not isinstance(blocks, (list, tuple)) or not blocks
            or any(isinstance(b, bool) or not isinstance(b, Integral) or b < 1 for b in blocks)):
        raise ConfigError("model.blocks", blocks, "a non-empty list of positive ints (bottleneck blocks per "
                          "stage), e.g. [3, 4, 6, 3] for ResNet-50")
    blocks = [int(b) for b in blocks]
    if depth != sum(blocks):
        raise ConfigError("model.depth", depth, f"must equal the number of bottleneck blocks, sum(model.blocks="
                          f"{blocks}) = {sum(blocks)}")
    return blocks


class ResNet(nn.Module):
    """CIFAR ResNet with bottleneck blocks (see the module docstring); input (n, in_channels, H, W).

    ``weight_layers()`` = [stem, then per block conv₁, conv₂, conv₃, projection (if any), …, readout]: 54 for
    ResNet-50.
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
        blocks: list[int] | None = None,
        in_channels: int = 3,
        norm: str | NormLayer = "bn_torch",
        act: str | ActLayer = "relu",
        bias: bool = False,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        for key, value in (("model.d_in", d_in), ("model.width", width), ("model.depth", depth),
                           ("model.in_channels", in_channels)):
            check_int(key, value, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        if d_in % in_channels:
            raise ConfigError("model.in_channels", in_channels,
                              f"must divide the input size {d_in} (inputs are (n, in_channels, H, W))")
        self.blocks_per_stage = _check_blocks(blocks, depth)
        self.in_channels, self.d_in = in_channels, d_in
        make_norm = norm_layer(norm, spatial=True, **(norm_kwargs or {}))
        self.act = act_layer(act)(1.0)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=bias)
        self.stem_norm = make_norm(width)
        layers, c_in = [], width
        for s, count in enumerate(self.blocks_per_stage):
            planes = width * 2**s
            for i in range(count):
                stride = 2 if s > 0 and i == 0 else 1
                layers.append(Bottleneck(c_in, planes, stride, norm_layer=make_norm, act=self.act, bias=bias))
                c_in = EXPANSION * planes
        self.blocks = nn.ModuleList(layers)
        self.features_dim = c_in
        self.readout = nn.Linear(c_in, d_out) if d_out is not None else None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x[0].numel() != self.d_in:
            raise ValueError(f"expected images (n, {self.in_channels}, H, W) with {self.d_in} values each, "
                             f"got shape {tuple(x.shape)}")
        x = self.act(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            h, z, x = block(x)
            if layers is not None:
                layers.append({"pre": h.flatten(1), "norm": z.flatten(1), "post": x.flatten(1)})
        f = x.mean(dim=(2, 3))  # global average pool: (n, 4·width·2^(S−1))
        if layers is not None:
            layers.append({"pre": f, "norm": f, "post": f})
        return self.readout(f) if self.readout is not None else f

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(forward(x), layers)`` in one pass: layers 0 … depth−1 the blocks' flattened {"pre", "norm", "post"},
        layer ``depth`` the pooled features ``f`` (the same tensor in all three keys)."""
        layers: list[dict[str, Tensor]] = []
        return self._forward(x, layers), layers

    def weight_layers(self) -> list[nn.Module]:
        """[stem, block 0's conv₁, conv₂, conv₃, projection (if any), block 1's …, readout]."""
        body = [m for block in self.blocks for m in block.weight_layers()]
        return [self.stem, *body, *([self.readout] if self.readout is not None else [])]

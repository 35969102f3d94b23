"""A plain stride-1 convolutional network: the ortho paper's Fig 5b ConvNet.

``depth`` blocks on feature maps of ``width`` channels, no pooling (the spatial size never changes)::

    order="pre_act":   x = norm_ℓ(conv_ℓ(σ(x)))       # the ortho paper's block: ReLU → Conv3×3 → BN2d
    order="norm_act":  x = σ(norm_ℓ(conv_ℓ(x)))

conv_0 maps ``in_channels`` to ``width`` channels, every later conv ``width`` to ``width``; kernel
``kernel`` (odd), stride 1, padding ``kernel // 2`` with ``padding_mode`` (the paper's caption says zero
padding, its code ran with ``reflect``). The optional readout to ``d_out`` (with ``d_out`` set) is

    readout="gap":      logits = Linear(width, d_out)(mean over H, W of x)     # the default
    readout="flatten":  logits = Linear(width·H·W, d_out)(flatten(x))

Fig 5b never uses it (``gap`` only serves the cross-entropy of a probe); ``flatten`` with ``order="norm_act"``,
``norm="none"`` and zero padding is the Fig 7 quick net (spec §3: "Conv(3,16,3,p=1)+ReLU, then extra ×
[Conv(16,16,3,p=1)+ReLU], then Linear(16·8·8, 10)", i.e. depth = 1 + extra). H·W is d_in / in_channels, as
the spatial size never changes.

``forward_features`` layer ℓ holds ``"pre"`` (conv output), ``"norm"`` and ``"post"`` (block output)
*flattened* to ``(n, C·H·W)``: representation metrics see one sample as one vector, as the paper
measures the orthogonality gap of flattened feature maps.
"""

from __future__ import annotations

from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int, choose
from bnexp.nn.activations import ActLayer, act_layer
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["ConvNet"]

ORDERS = ("pre_act", "norm_act")
PADDINGS = ("zeros", "reflect", "replicate", "circular")
READOUTS = ("gap", "flatten")


class ConvNet(nn.Module):
    """``depth`` conv blocks of ``width`` channels (see the module docstring); input (n, in_channels, H, W).

    ``d_in`` (the flattened input size the trainer passes) must be a multiple of ``in_channels``.
    ``weight_layers()`` = [conv_0, …, conv_{depth−1}, readout].
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int | None = None,
        *,
        in_channels: int = 3,
        norm: str | NormLayer = "bn_torch",
        act: str | ActLayer = "relu",
        bias: bool = False,
        order: str = "pre_act",
        kernel: int = 3,
        padding_mode: str = "reflect",
        readout: str = "gap",
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        for key, value in (("model.d_in", d_in), ("model.width", width), ("model.depth", depth),
                           ("model.in_channels", in_channels), ("model.kernel", kernel)):
            check_int(key, value, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        if d_in % in_channels:
            raise ConfigError("model.in_channels", in_channels,
                              f"must divide the input size {d_in} (inputs are (n, in_channels, H, W))")
        if kernel % 2 == 0:
            raise ConfigError("model.kernel", kernel, "an odd kernel size (stride 1 keeps the spatial size)")
        choose("model.order", order, ORDERS)
        choose("model.padding_mode", padding_mode, PADDINGS)
        choose("model.readout", readout, READOUTS)
        self.order, self.in_channels, self.d_in, self.flatten = order, in_channels, d_in, readout == "flatten"
        self.conv = nn.ModuleList(
            nn.Conv2d(in_channels if l == 0 else width, width, kernel, padding=kernel // 2,
                      padding_mode=padding_mode, bias=bias)
            for l in range(depth)
        )
        make_norm = norm_layer(norm, spatial=True, **(norm_kwargs or {}))
        self.norm = nn.ModuleList(make_norm(width) for _ in range(depth))
        self.act = act_layer(act)(1.0)
        features = width * (d_in // in_channels) if self.flatten else width  # flatten: C·H·W, H·W unchanged
        self.readout = nn.Linear(features, d_out, bias=bias) if d_out is not None else None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images (n, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if self.flatten and self.readout is not None and x[0].numel() != self.d_in:
            raise ValueError(f"readout=flatten was sized for {self.d_in} input values, got shape {tuple(x.shape)}")
        for conv, norm in zip(self.conv, self.norm):
            if self.order == "pre_act":
                h = conv(self.act(x))
                z = x = norm(h)
            else:
                h = conv(x)
                z = norm(h)
                x = self.act(z)
            if layers is not None:
                layers.append({"pre": h.flatten(1), "norm": z.flatten(1), "post": x.flatten(1)})
        if self.readout is None:
            return x
        return self.readout(x.flatten(1) if self.flatten else x.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(forward(x), layers)`` in one pass; ``layers[ℓ]`` = flattened {"pre", "norm", "post"} of block ℓ."""
        layers: list[dict[str, Tensor]] = []
        return self._forward(x, layers), layers

    def weight_layers(self) -> list[nn.Module]:
        """[conv_0, …, conv_{depth−1}, readout]."""
        return [*self.conv, *([self.readout] if self.readout is not None else [])]

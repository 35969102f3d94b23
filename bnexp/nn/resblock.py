"""The low-rank paper's residual MLP (RES-L-H, RES-BN-L-H; Galanti & Poggio, spec §1.2).

A stem ``Linear(d_in → H)`` with no norm and no activation, then ``depth`` independent residual blocks, then a
readout ``Linear(H → d_out)``. Block ℓ (ℓ = 0 … depth−1) with weights W1, W2 ∈ R^{H×H}::

    z ↦ z + σ(n2(W2 σ(n1(W1 z))))

σ = the configured activation (ReLU in the paper), n1, n2 = the configured norm (``bn_torch`` for RES-BN-L-H,
``none`` for RES-L-H). The activation after n2 comes *before* the skip addition, as the paper writes it (the
reference code drops it and adds a stem BN; spec §A.6 follows the paper). Every block has its own weights (the
reference code's ``depth*[FCBlock(...)]`` shares one block: not copied). PyTorch's default init and biases on
by default.

``weight_layers()`` = [stem, b0.W1, b0.W2, …, b_{L−1}.W2, readout] (spec M3's order), so block ℓ's W1 is index
2ℓ + 1 and its W2 is index 2ℓ + 2. ``forward_features`` layer ℓ (block ℓ): ``"pre"`` = W2's output (the
branch's second linear map), ``"norm"`` = n2's output, ``"post"`` = the block output z + σ(n2(·)).
"""

from __future__ import annotations

from torch import Tensor, nn

from bnexp.errors import check_int
from bnexp.nn.activations import ActLayer, act_layer
from bnexp.nn.mlp import LayeredNetwork
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["ResBlock", "ResBlockMLP"]


class ResBlock(nn.Module):
    """One block z ↦ z + σ(n2(W2 σ(n1(W1 z)))) of width H."""

    def __init__(self, width: int, make_norm, make_act, bias: bool):
        super().__init__()
        self.W1 = nn.Linear(width, width, bias=bias)
        self.n1 = make_norm(width)
        self.act1 = make_act(1.0)
        self.W2 = nn.Linear(width, width, bias=bias)
        self.n2 = make_norm(width)
        self.act2 = make_act(1.0)

    def forward_parts(self, z: Tensor) -> dict[str, Tensor]:
        """{"pre": W2 σ(n1(W1 z)), "norm": n2(pre), "post": z + σ(norm)}."""
        pre = self.W2(self.act1(self.n1(self.W1(z))))
        normed = self.n2(pre)
        return {"pre": pre, "norm": normed, "post": z + self.act2(normed)}

    def forward(self, z: Tensor) -> Tensor:
        return self.forward_parts(z)["post"]


class ResBlockMLP(LayeredNetwork):
    """Stem Linear(d_in → width), ``depth`` :class:`ResBlock` s, readout Linear(width → d_out) (module docstring).

    ``d_out = None``: no readout; ``forward`` returns the last block's output (n, width).
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int | None = None,
        *,
        norm: str | NormLayer = "bn_torch",
        act: str | ActLayer = "relu",
        bias: bool = True,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        check_int("model.d_in", d_in, 1)
        check_int("model.width", width, 1)
        check_int("model.depth", depth, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        make_norm, make_act = norm_layer(norm, **(norm_kwargs or {})), act_layer(act)
        self.stem = nn.Linear(d_in, width, bias=bias)
        self.blocks = nn.ModuleList(ResBlock(width, make_norm, make_act, bias) for _ in range(depth))
        self.readout = nn.Linear(width, d_out, bias=bias) if d_out is not None else None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        z = self.stem(x.flatten(1))  # no norm, no activation (paper)
        for block in self.blocks:
            parts = block.forward_parts(z)
            z = parts["post"]
            if layers is not None:
                layers.append(parts)
        return self.readout(z) if self.readout is not None else z

    def weight_layers(self) -> list[nn.Module]:
        """[stem, b0.W1, b0.W2, …, b_{L−1}.W2, readout]: block ℓ's W1 is index 2ℓ+1, its W2 2ℓ+2."""
        inner = [linear for block in self.blocks for linear in (block.W1, block.W2)]
        return [self.stem, *inner, *([self.readout] if self.readout is not None else [])]

"""Stacks of pure self-attention (Dong, Cordonnier, Loukas 2021, "Attention is not all you need: pure attention
loses rank doubly exponentially with depth"): no MLP blocks, no activation, optional skip connections and a norm.

Orientation: the input ``(n, d_in)`` is ONE sequence of n tokens, rows = tokens (as rows = samples elsewhere), so
a probe metric of a layer's ``(n, d)`` representation measures the token matrix X ∈ R^{n×d} of the paper itself.

One self-attention layer with H heads, d_h = d / H (the paper's SA, its W_{QK} = W_Q W_Kᵀ, in row orientation)::

    P_h = softmax_row( X W_Q,h (X W_K,h)ᵀ / √d_h )      (n × n, row-stochastic)
    SA(X) = [P_1 X W_V,1, …, P_H X W_V,H] W_O           (the heads concatenated, then the output map)

With ``nn.Linear`` layers ``q, k, v, o`` (weights ``(out, in)``), ``X W_Q`` is ``q(X)`` and W_Q = q.weightᵀ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bnexp.errors import ConfigError, check_bool, check_int
from bnexp.nn.activations import ActLayer
from bnexp.nn.mlp import LayeredNetwork, check_sizes
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["SelfAttention", "SelfAttentionNet"]


class SelfAttention(nn.Module):
    """``SA(X)`` of one layer: ``heads`` softmax attention heads on X (n, d), concatenated, then W_O.

    ``forward(x)`` returns ``(SA(X), P)`` with P the ``(heads, n, n)`` attention matrices (row-stochastic).
    """

    def __init__(self, width: int, heads: int = 1, bias: bool = False):
        super().__init__()
        self.heads, self.d_head = heads, width // heads
        self.q = nn.Linear(width, width, bias=bias)
        self.k = nn.Linear(width, width, bias=bias)
        self.v = nn.Linear(width, width, bias=bias)
        self.o = nn.Linear(width, width, bias=bias)

    def _split(self, h: Tensor) -> Tensor:
        """(n, d) → (heads, n, d_h): head h holds columns h·d_h … (h+1)·d_h − 1."""
        return h.reshape(h.shape[0], self.heads, self.d_head).transpose(0, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        p = torch.softmax(q @ k.mT / math.sqrt(self.d_head), dim=-1)  # (heads, n, n): softmax over the keys
        heads = (p @ v).transpose(0, 1).reshape(x.shape[0], -1)  # (n, d): the heads side by side
        return self.o(heads), p

    def weight_layers(self) -> list[nn.Linear]:
        return [self.q, self.k, self.v, self.o]


def _check(width: int, heads: int, act) -> None:
    check_int("model.heads", heads, 1)
    if width % heads:
        raise ConfigError("model.heads", heads, f"must divide model.width = {width} (d_h = width / heads)")
    if act != "linear":  # rank collapse is a property of attention alone; an activation would be another model
        raise ConfigError("act.name", act, "linear (the attention stack has no activation and no MLP blocks)")


class SelfAttentionNet(LayeredNetwork):
    """Input projection, ``depth`` self-attention layers on the token matrix X ∈ R^{n×d}, optional per-token readout.

    ``X_0 = fc_in(x)`` (d_in → d, no norm), then for layer ℓ (post-norm, as the original Transformer's post-LN)::

        skip=False:  X ← norm(SA_ℓ(X))          # pure attention (norm=none: the paper's SAN)
        skip=True:   X ← norm(X + SA_ℓ(X))

    then the readout ``width → d_out`` applied to every token: logits ``(n, d_out)``, one labelled sample per token,
    so the trainer's loss applies unchanged. There is no activation: ``act`` must be ``linear``.

    ``forward_features`` layer ℓ: ``"pre"`` = SA_ℓ(X) (the attention output, before the skip and the norm),
    ``"norm"`` = the norm's output, which is also ``"post"`` = the layer output X_{ℓ+1} (as ``ResidualMLP``'s
    post-norm placement). ``weight_layers()`` = [fc_in, W_Q,0, W_K,0, W_V,0, W_O,0, …, readout]: layer ℓ's maps are
    indices 4ℓ + 1 … 4ℓ + 4. ``attention(x)`` returns every layer's attention matrices.
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int | None = None,
        *,
        norm: str | NormLayer = "none",
        act: str | ActLayer = "linear",
        heads: int = 1,
        skip: bool = False,
        bias: bool = False,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        check_int("model.d_in", d_in, 1)
        check_int("model.width", width, 1)
        check_int("model.depth", depth, 1)
        if d_out is not None:
            check_int("model.d_out", d_out, 1)
        _check(width, heads, act)
        self.skip = check_bool("model.skip", skip)
        check_bool("model.bias", bias)
        self.fc_in = nn.Linear(d_in, width, bias=bias)
        self.layers = nn.ModuleList(SelfAttention(width, heads, bias) for _ in range(depth))
        make_norm = norm_layer(norm, **(norm_kwargs or {}))
        self.norm = nn.ModuleList(make_norm(width) for _ in range(depth))
        self.readout = nn.Linear(width, d_out, bias=bias) if d_out is not None else None

    @staticmethod
    def check_config(cfg) -> None:
        """The checks of the constructor that need no data, on a run's config (``engines.train.validate`` calls
        this before any run starts): ``model.depth``, ``model.width`` ≥ 1, ``model.heads`` divides ``model.width``,
        ``act`` is linear."""
        check_sizes(cfg)
        _check(int(cfg.model.width), cfg.model.get("heads", 1), cfg.act.name)

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None,
                 attention: list[Tensor] | None = None) -> Tensor:
        h = self.fc_in(x.flatten(1))  # (n tokens, d)
        for sa, norm in zip(self.layers, self.norm):
            branch, p = sa(h)
            h = norm(h + branch if self.skip else branch)
            if layers is not None:
                layers.append({"pre": branch, "norm": h, "post": h})
            if attention is not None:
                attention.append(p)
        return self.readout(h) if self.readout is not None else h

    def attention(self, x: Tensor) -> list[Tensor]:
        """The attention matrices P of every layer for input ``x``: ``depth`` tensors of shape (heads, n, n)."""
        maps: list[Tensor] = []
        self._forward(x, None, maps)
        return maps

    def weight_layers(self) -> list[nn.Module]:
        """[fc_in, W_Q,0, W_K,0, W_V,0, W_O,0, …, readout]: layer ℓ's maps are indices 4ℓ + 1 … 4ℓ + 4."""
        maps = [m for sa in self.layers for m in sa.weight_layers()]
        return [self.fc_in, *maps, *([self.readout] if self.readout is not None else [])]

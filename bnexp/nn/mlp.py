"""Fully connected networks: the papers' BN MLP and the residual MLP of the theory chains.

``MLP`` is the depth paper's ``MLPWithBatchNorm`` and the rank papers' MLPs: Linear → norm → activation
for every hidden layer, then a plain readout. ``ResidualMLP`` is the post-norm residual chain
``H ← BN(H + γ W F(H))`` of rank Eq. (1) / markov Eq. (5) behind an input projection, with a pre-norm
variant and γ = ∞ for no skip.

Both take the norm and activation by config name (registries ``bnexp.nn.norms.NORMS``,
``bnexp.nn.activations.ACTIVATIONS``) or as factories (``norm_layer``: features → module, ``act_layer``:
gain → module), flatten inputs with more than 2 dims, and return

* ``forward(x)``: logits ``(n, d_out)``, or the last representation ``(n, width)`` when ``d_out`` is None;
* ``forward_features(x)``: ``(same output, layers)`` from the same pass, ``layers[ℓ]`` a dict with
  ``"pre"``, ``"norm"`` and ``"post"`` tensors of hidden layer (block) ℓ;
* ``weight_layers()``: the ``nn.Linear`` layers in input → output order (see each class for which
  hidden layer each index belongs to).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from bnexp.errors import ConfigError, check_int, choose
from bnexp.nn.activations import ActLayer, act_layer, gain_schedule
from bnexp.nn.norms import NormLayer, norm_layer

__all__ = ["MLP", "ResidualMLP", "check_sizes"]

ORDERS = ("norm_act", "act_norm", "pre_act")
PLACEMENTS = ("post", "pre", "branch")


def check_sizes(cfg) -> None:
    """``model.depth`` and ``model.width`` of a run's config are integers ≥ 1: the model contract's default
    ``check_config`` (:mod:`bnexp.nn.models`), for every model built from these two sizes."""
    for key in ("depth", "width"):
        check_int(f"model.{key}", cfg.model.get(key), 1)


def _check_size(key: str, value: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    check_int(key, value, 1)


class LayeredNetwork(nn.Module):
    """``forward`` and ``forward_features`` share one pass, ``_forward(x, layers)``, that appends each hidden
    layer's {"pre", "norm", "post"} to ``layers`` when it is a list. The base of every model made of a chain of
    layers (MLP, ResidualMLP, ResBlockMLP, SelfAttentionNet)."""

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, None)

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(forward(x), layers)`` in one pass; ``layers[ℓ]`` = {"pre", "norm", "post"} of layer (block) ℓ."""
        layers: list[dict[str, Tensor]] = []
        return self._forward(x, layers), layers


class MLP(LayeredNetwork):
    """``depth`` normalised hidden layers of width d, then an optional readout.

    For ℓ = 0 … depth−1 (fc_0: d_in → d, fc_ℓ: d → d)::

        h_ℓ = fc_ℓ(x)
        order="norm_act":  x = σ(α_ℓ · norm_ℓ(h_ℓ))      # Linear → BN → activation (all papers)
        order="act_norm":  x = norm_ℓ(σ(α_ℓ · h_ℓ))
        order="pre_act":   h_ℓ = fc_ℓ(σ(α_ℓ · x)); x = norm_ℓ(h_ℓ)   # activation → Linear → BN

``pre_act`` is the ortho paper's Fig 5 block (its code applies the ReLU to the raw input too).

    with ``α_ℓ = gain · (ℓ+1)^(−gain_exponent)`` (depth eq. 11, shaped activation). The readout
    ``fc_depth: d → d_out`` has no norm. There are ``depth + 1`` Linear layers when ``d_out`` is set.

    ``forward_features`` layer ℓ: ``"pre"`` = h_ℓ, ``"norm"`` = the norm's output, ``"post"`` = x.
    ``weight_layers()[ℓ]`` is fc_ℓ (the Linear feeding hidden layer ℓ); the readout is last (index depth).
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
        order: str = "norm_act",
        gain_exponent: float = 0.0,
        gain: float = 1.0,
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        _check_size("model.d_in", d_in)
        _check_size("model.width", width)
        _check_size("model.depth", depth)
        _check_size("model.d_out", d_out, allow_none=True)
        choose("model.order", order, ORDERS)
        self.order = order
        self.fc = nn.ModuleList(nn.Linear(d_in if l == 0 else width, width, bias=bias) for l in range(depth))
        make_norm, make_act = norm_layer(norm, **(norm_kwargs or {})), act_layer(act)
        self.norm = nn.ModuleList(make_norm(width) for _ in range(depth))
        self.act = nn.ModuleList(make_act(gain_schedule(l, gain_exponent, gain)) for l in range(depth))
        self.readout = nn.Linear(width, d_out, bias=bias) if d_out is not None else None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        x = x.flatten(1)  # (n, d_in)
        for fc, norm, act in zip(self.fc, self.norm, self.act):
            if self.order == "pre_act":
                h = fc(act(x))
                z = x = norm(h)
                if layers is not None:
                    layers.append({"pre": h, "norm": z, "post": x})
                continue
            h = fc(x)  # (n, d)
            if self.order == "norm_act":
                z = norm(h)
                x = act(z)
            else:
                z = x = norm(act(h))
            if layers is not None:
                layers.append({"pre": h, "norm": z, "post": x})
        return self.readout(x) if self.readout is not None else x

    def weight_layers(self) -> list[nn.Module]:
        """[fc_0, …, fc_{depth−1}, readout]: index ℓ < depth feeds hidden layer ℓ."""
        return [*self.fc, *([self.readout] if self.readout is not None else [])]


class ResidualMLP(LayeredNetwork):
    """Input projection, ``depth`` residual blocks on H ∈ R^{n×d}, optional readout.

    ``H_0 = fc_in(x)`` (d_in → d, no norm), then for block ℓ with weight W_ℓ (d×d) and F = σ::

        placement="post":  H ← norm(H + γ · F(H) W_ℓᵀ)     # theory: BN(H + γ W F(H)), rank Eq. (1)
        placement="pre":   H ← H + γ · F(norm(H)) W_ℓᵀ
        placement="branch": H ← H + γ · F(norm(H W_ℓᵀ))   # the depth paper's Fig J1 (assumed setup)
        gamma=inf:         H ← norm(F(H) W_ℓᵀ)  (post)  /  H ← F(norm(H)) W_ℓᵀ  (pre): no skip

    ``forward_features`` block ℓ: ``"pre"`` = the branch's linear output F(·) W_ℓᵀ (before the factor γ
    and the sum), ``"norm"`` = the norm's output (the block output for "post", norm(H) for "pre"),
    ``"post"`` = the block output. ``weight_layers()`` = [fc_in, W_0, …, W_{depth−1}, readout]: block ℓ's
    weight is index ℓ + 1.
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        depth: int,
        d_out: int | None = None,
        *,
        norm: str | NormLayer = "bn_theory",
        act: str | ActLayer = "relu",
        bias: bool = False,
        gamma: float = 1.0,
        placement: str = "post",
        norm_kwargs: dict | None = None,
    ):
        super().__init__()
        _check_size("model.d_in", d_in)
        _check_size("model.width", width)
        _check_size("model.depth", depth)
        _check_size("model.d_out", d_out, allow_none=True)
        if placement not in PLACEMENTS:
            raise ConfigError("model.placement", placement, PLACEMENTS)
        if math.isnan(gamma):
            raise ConfigError("model.gamma", gamma, "a number or inf (no skip connection)")
        self.gamma, self.placement = float(gamma), placement
        self.skip = not math.isinf(self.gamma)
        self.fc_in = nn.Linear(d_in, width, bias=bias)
        self.fc = nn.ModuleList(nn.Linear(width, width, bias=bias) for _ in range(depth))
        make_norm = norm_layer(norm, **(norm_kwargs or {}))
        self.norm = nn.ModuleList(make_norm(width) for _ in range(depth))
        self.act = act_layer(act)(1.0)
        self.readout = nn.Linear(width, d_out, bias=bias) if d_out is not None else None

    def _forward(self, x: Tensor, layers: list[dict[str, Tensor]] | None) -> Tensor:
        h = self.fc_in(x.flatten(1))  # (n, d)
        for fc, norm in zip(self.fc, self.norm):
            if self.placement == "post":
                branch = fc(self.act(h))
                h = z = norm(h + self.gamma * branch if self.skip else branch)
            elif self.placement == "branch":
                branch = fc(h)
                z = norm(branch)
                out = self.act(z)
                h = h + self.gamma * out if self.skip else out
            else:
                z = norm(h)
                branch = fc(self.act(z))
                h = h + self.gamma * branch if self.skip else branch
            if layers is not None:
                layers.append({"pre": branch, "norm": z, "post": h})
        return self.readout(h) if self.readout is not None else h

    def weight_layers(self) -> list[nn.Module]:
        """[fc_in, W_0, …, W_{depth−1}, readout]: block ℓ's weight is index ℓ + 1."""
        return [self.fc_in, *self.fc, *([self.readout] if self.readout is not None else [])]

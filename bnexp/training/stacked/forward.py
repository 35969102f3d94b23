"""The train-mode forward pass of R replicates of one architecture, as batched matmuls over a leading dim R.

Inputs ``x`` are ``(R, B, d_in)``: replicate r's own minibatch. Every tensor keeps the leading R, so replicates
never mix. Per layer kind (``P[name]``: the ``(R, *shape)`` view of a stacked parameter):

* ``nn.Linear``: ``h = x Wᵀ + b`` → ``torch.baddbmm(b[:, None], x, W.transpose(1, 2))`` (one BLAS call for all
  replicates, ``bmm`` without bias);
* ``nn.BatchNorm1d`` in train mode, per replicate and channel over its own B samples::

      μ = mean_b h,  v = mean_b (h − μ)²  (biased),  y = (h − μ) / sqrt(v + ε) · γ + β

  with the running statistics' new values ``(1 − m)·running + m·μ`` and ``(1 − m)·running + m·v·B/(B − 1)``
  computed here (``stats[name]``, detached) and committed by the optimiser only for replicates whose step
  is applied (a frozen replicate keeps its statistics);
* activations are elementwise modules (``bnexp.nn.activations``), applied as they are;
* ``nn.Identity`` norms are skipped.

Linear and BN are autograd Functions whose backward writes the parameter gradients straight into the
gradient buffer's views (``out=``); activations and the loss go through autograd as usual, and an autograd
"token" (a 0-dim leaf every Function takes) keeps the graph alive from the first layer. Written out rather than
``vmap(functional_call)``: on the 2-core CPU (MLP-BN-5-64, B = 8, R = 12, float32, 1 thread) the vmapped
version trains at 2.5× the plain loop, this one (with the update of :mod:`~bnexp.training.stacked.sgd`) at
4.4× (``make bench-lowrank``); and the running statistics need no in-place buffer updates under vmap.

Supported models: ``bnexp.nn.mlp.MLP`` (every ``order``) and ``bnexp.nn.resblock.ResBlockMLP``, with norms
``bn_torch`` or ``none``; anything else raises ``ValueError`` naming what is missing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnexp.nn.mlp import MLP
from bnexp.nn.resblock import ResBlockMLP

__all__ = ["Forward", "Pass", "stacked_forward"]

# (the pass, x (R, B, d_in)) → logits (R, B, d_out); backward fills the pass's gradient views
Forward = Callable[["Pass", Tensor], Tensor]


class _Linear(torch.autograd.Function):
    """h = x Wᵀ + b. Backward writes ∂/∂W = gᵀ x (R, out, in) and ∂/∂b = Σ_b g straight into the gradient
    buffer's views (``out=``): no per-parameter gradient tensors, no transposed copies, no final ``cat``."""

    @staticmethod
    def forward(ctx, x, token, W, b, gW, gb):
        ctx.save_for_backward(x, W)
        ctx.gW, ctx.gb = gW, gb
        if b is None:
            return torch.bmm(x, W.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, W.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        torch.bmm(g.transpose(1, 2), x, out=ctx.gW)
        if ctx.gb is not None:
            torch.sum(g, 1, out=ctx.gb)
        gx = torch.bmm(g, W) if ctx.needs_input_grad[0] else None
        return gx, None, None, None, None, None


class _BatchNorm(torch.autograd.Function):
    """y = x̂ γ + β, x̂ = (h − μ)/sqrt(v + ε) per replicate and channel over the B samples. Backward (the
    standard BN gradient, v not detached): ∂β = Σ_b dy, ∂γ = Σ_b dy x̂ (into the gradient buffer), and
    dh = (dx̂ − mean_b dx̂ − x̂ · mean_b(dx̂ x̂)) / sqrt(v + ε) with dx̂ = dy γ."""

    @staticmethod
    def forward(ctx, h, token, eps, gamma, beta, g_gamma, g_beta, stats, name):
        n = h.shape[1]
        if n < 2:
            raise ValueError(f"BatchNorm1d needs more than 1 value per channel in train mode (batch of {n})")
        mean = h.mean(1, keepdim=True)  # (R, 1, C)
        centred = h - mean
        var = centred.square().mean(1, keepdim=True)  # biased: what normalises
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd
        if stats is not None:
            stats[f"{name}.running_mean"] = mean.squeeze(1)
            stats[f"{name}.running_var"] = var.squeeze(1) * (n / (n - 1))  # unbiased, as torch keeps it
        ctx.save_for_backward(xhat, invstd, gamma)
        ctx.g_gamma, ctx.g_beta = g_gamma, g_beta
        if gamma is None:
            return xhat
        return torch.addcmul(beta.unsqueeze(1), xhat, gamma.unsqueeze(1))

    @staticmethod
    def backward(ctx, dy):
        xhat, invstd, gamma = ctx.saved_tensors
        if gamma is not None:
            torch.sum(dy, 1, out=ctx.g_beta)
            torch.sum(dy * xhat, 1, out=ctx.g_gamma)
            dy = dy * gamma.unsqueeze(1)
        dh = (dy - dy.mean(1, keepdim=True) - xhat * (dy * xhat).mean(1, keepdim=True)) * invstd
        return dh, None, None, None, None, None, None, None, None


class Pass:
    """One forward pass: parameter views ``P``, gradient-buffer views ``G``, the autograd token, the new
    running statistics ``stats`` (None: not tracked)."""

    def __init__(self, P: dict[str, Tensor], G: dict[str, Tensor], token: Tensor, stats: dict | None):
        self.P, self.G, self.token, self.stats = P, G, token, stats

    def linear(self, name: str, x: Tensor) -> Tensor:
        w, b = f"{name}.weight", f"{name}.bias"
        return _Linear.apply(x, self.token, self.P[w], self.P.get(b), self.G[w], self.G.get(b))

    def norm(self, module: nn.Module, name: str, h: Tensor) -> Tensor:
        if isinstance(module, nn.Identity):
            return h
        w, b = f"{name}.weight", f"{name}.bias"
        stats = self.stats if module.track_running_stats else None
        return _BatchNorm.apply(h, self.token, module.eps, self.P.get(w), self.P.get(b), self.G.get(w),
                                self.G.get(b), stats, name)


def _check_norm(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.Identity):
        return
    if type(module) is not nn.BatchNorm1d:
        raise ValueError(f"stacked training supports the norms bn_torch and none; {name} is "
                         f"{type(module).__name__}")
    if module.momentum is None:
        raise ValueError(f"stacked training needs a BN momentum (cumulative averages unsupported): {name}")


def _mlp(model: MLP) -> Forward:
    for l, norm in enumerate(model.norm):
        _check_norm(norm, f"norm.{l}")
    order, acts, norms = model.order, list(model.act), list(model.norm)
    readout = model.readout is not None

    def forward(p: Pass, x: Tensor) -> Tensor:
        x = x.flatten(2)
        for l, (act, norm) in enumerate(zip(acts, norms)):
            if order == "pre_act":
                x = p.norm(norm, f"norm.{l}", p.linear(f"fc.{l}", act(x)))
            elif order == "norm_act":
                x = act(p.norm(norm, f"norm.{l}", p.linear(f"fc.{l}", x)))
            else:  # act_norm
                x = p.norm(norm, f"norm.{l}", act(p.linear(f"fc.{l}", x)))
        return p.linear("readout", x) if readout else x

    return forward


def _resblock(model: ResBlockMLP) -> Forward:
    blocks = []
    for l, block in enumerate(model.blocks):
        _check_norm(block.n1, f"blocks.{l}.n1")
        _check_norm(block.n2, f"blocks.{l}.n2")
        blocks.append((f"blocks.{l}", block.n1, block.act1, block.n2, block.act2))
    readout = model.readout is not None

    def forward(p: Pass, x: Tensor) -> Tensor:
        z = p.linear("stem", x.flatten(2))  # no norm, no activation (paper)
        for name, n1, act1, n2, act2 in blocks:
            u = act1(p.norm(n1, f"{name}.n1", p.linear(f"{name}.W1", z)))
            z = z + act2(p.norm(n2, f"{name}.n2", p.linear(f"{name}.W2", u)))
        return p.linear("readout", z) if readout else z

    return forward


def stacked_forward(model: nn.Module) -> Forward:
    """The stacked train-mode forward of ``model``'s architecture (module docstring); raises ``ValueError`` for an
    unsupported model or norm."""
    if type(model) is MLP:
        return _mlp(model)
    if type(model) is ResBlockMLP:
        return _resblock(model)
    raise ValueError(f"stacked training supports the models MLP and ResBlockMLP, not {type(model).__name__}")

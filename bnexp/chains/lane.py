"""One lane: a group of replicates stepped together by one ``bmm`` per layer, with its weight slots."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import torch
from torch import Tensor

from bnexp import metrics
from bnexp.chains.draws import draw_input, draw_weights, reference_seed, weight_shape
from bnexp.chains.params import ChainParams
from bnexp.nn.activations import ACTIVATIONS
from bnexp.runtime import DTYPES

SLOTS = 2  # weight blocks in flight per lane (double buffering: draw block k+1 while stepping block k)


def bn_theory_(h: Tensor, eps: float, unit_norm: bool = False) -> Tensor:
    """In place: x / sqrt(mean_batch(x²) + eps) per feature, i.e. diag(M + eps)^{-1/2} H. h (R, N, d).

    ``unit_norm``: x / sqrt(sum_batch(x²) + eps) instead, each feature to unit norm over the batch (the ortho
    paper's BN(M) = diag(M Mᵀ)^{-1/2} M; entries ~1/√N, which matters for a nonlinear F).
    """
    ms = h.square().sum(dim=-2, keepdim=True) if unit_norm else h.square().mean(dim=-2, keepdim=True)  # (R, 1, d)
    return h.mul_(ms.add_(eps).rsqrt_())


def bn_center_(h: Tensor, eps: float, unit_norm: bool = False) -> Tensor:
    """In place: (x − μ) / sqrt(var_biased + eps) per feature, statistics over the batch. h (R, N, d).

    Two passes (centre, then mean of squares): torch.var_mean over a batch dimension is 10–15× slower on CPU.
    ``unit_norm``: the sum of squares instead of the mean (each centred feature to unit norm).
    """
    h.sub_(h.mean(dim=-2, keepdim=True))
    ss = h.square().sum(dim=-2, keepdim=True) if unit_norm else h.square().mean(dim=-2, keepdim=True)
    return h.mul_(ss.add_(eps).rsqrt_())


def layernorm_(h: Tensor, eps: float, groups: int = 1) -> Tensor:
    """In place, per sample: (x − μ) / sqrt(var_biased + eps) over each of ``groups`` equal blocks of the d features
    (LayerNorm without affine part for ``groups = 1``, GroupNorm otherwise; statistics over features, not the batch).
    h (R, N, d)."""
    g = h.view(*h.shape[:-1], groups, h.shape[-1] // groups)  # (R, N, G, d/G), a view: writes go to h
    g.sub_(g.mean(dim=-1, keepdim=True))
    g.mul_(g.square().mean(dim=-1, keepdim=True).add_(eps).rsqrt_())
    return h


def rmsnorm_(h: Tensor, eps: float) -> Tensor:
    """In place, per sample: x / sqrt(mean_features(x²) + eps) (RMSNorm without affine part). h (R, N, d)."""
    return h.mul_(h.square().mean(dim=-1, keepdim=True).add_(eps).rsqrt_())


def renormalize_(h: Tensor, target: float) -> Tensor:
    """In place: rescale each replicate to ‖H‖_F² = target (vanilla chains; 0 or inf give nan, recorded)."""
    norm = torch.linalg.vector_norm(h, dim=(-2, -1), keepdim=True)  # (R, 1, 1)
    return h.mul_(norm.reciprocal_().mul_(math.sqrt(target)))


class Lane:
    """A group of replicates stepped together: state (Rg, N, d) (or M (Rg, d, d)), weight slots, bookkeeping."""

    def __init__(self, p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device, chunks: int):
        self.p = p
        self.dtype = DTYPES[p.dtype]
        self.device = device
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        ab = [p.coefficients(g) for g in gammas]
        self.a = [a for a, _ in ab]
        self.b = [b for _, b in ab]
        self.a_all = self.a[0] if len(set(self.a)) == 1 else None  # None: mixed (γ batching)
        self.skip = torch.tensor([a != 0.0 for a in self.a], device=device).view(-1, 1, 1)  # a ∈ {0, 1}
        self.linear = p.act == "linear" or p.act_order == "after_norm"  # pre-activation is a·H + b·H Wᵀ
        self.fold = p.sampler == "full_w" and self.linear  # slots hold A = a·I + b·W: one bmm per step
        self.block = p.block_layers()
        shape = weight_shape(p)
        r = len(seeds)
        # slots (B, Rg, *shape): one layer's coefficients of all replicates are contiguous for the bmm (~15%
        # faster at d = 32 than replicate-major); each replicate draws its block contiguously into a float32
        # stage (one per chunk) and it is scattered, cast and scaled into the slot
        self.slots = [torch.empty((self.block, r, *shape), dtype=self.dtype, device=device) for _ in range(SLOTS)]
        # per-layer views, made once: Aᵀ (or (b·W)ᵀ) for H-space full_w (h @ Wᵀ), as drawn otherwise
        transpose = p.space == "H" and p.sampler == "full_w"
        self.views = [(slot.mT if transpose else slot).unbind(0) for slot in self.slots]
        self.stages: dict[int, Tensor] = {}  # chunk → float32 (B, *shape) draw buffer
        unit = p.bn_scale == "unit_norm"
        self.norm_ = {"bn_theory": lambda h: bn_theory_(h, p.eps, unit),
                      "bn_center": lambda h: bn_center_(h, p.eps, unit),
                      "layernorm": lambda h: layernorm_(h, p.eps),
                      "rmsnorm": lambda h: rmsnorm_(h, p.eps),
                      "groupnorm": lambda h: layernorm_(h, p.eps, p.groups),
                      "none": (lambda h: renormalize_(h, p.renorm_target())) if p.renormalize else (lambda h: h)
                      }[p.norm]
        self.act = ACTIVATIONS[p.act]
        self.post_act = p.act_order == "after_norm" and p.act != "linear"
        # input
        x = torch.stack([draw_input(p, g) for g in self.gens]).to(self.dtype)  # (Rg, N, d)
        h = self.norm_(x) if p.norm_input else x
        if p.space == "M":
            self.state = h.mT @ h / p.n  # (Rg, d, d)
            self._step = self._step_m
        else:
            self.state = h
            self._step = self._step_gram if p.sampler == "gram" else (self._step_linear if self.fold else
                                                                         self._step_branch)
        self.tmp = torch.empty_like(self.state)
        # the reference chains' mean normalised Gram K (Rg, N, N), for conjecture_gap / reference_gram
        self.reference = reference_gram(p, seeds, gammas, device) if p.reference_depth > 0 else None
        # scheduling state (guarded by the engine's lock)
        bounds = np.linspace(0, r, min(chunks, r) + 1).astype(int)
        self.chunks = [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]
        self.drawn = [0] * len(self.chunks)  # blocks each chunk has finished drawing
        self.busy = [False] * len(self.chunks)
        self.next_step = 0  # block to step next
        self.stepping = False
        self.layer = 0
        self.last_layer = 0
        self.last_block = -1

    # ---- weights

    def draw(self, chunk: int, block: int) -> None:
        """Draw block ``block`` for the replicates of ``chunk`` into its slot, folding a and b in."""
        slot = self.slots[block % SLOTS]
        stage = self.stages.get(chunk)
        if stage is None:  # float32 draw buffer of this chunk (B, *shape)
            stage = self.stages[chunk] = torch.empty((self.block, *slot.shape[2:]), device=self.device)
        for r in self.chunks[chunk]:
            out = slot[:, r]  # (B, *shape) view, contiguous when B = 1
            if out.dtype == torch.float32 and out.is_contiguous():
                draw_weights(self.p, self.gens[r], out)
            else:
                out.copy_(draw_weights(self.p, self.gens[r], stage))  # cast, then scale in the chain dtype
            if self.b[r] != 1.0:
                out.mul_(self.b[r])
            if self.fold and self.a[r] != 0.0:
                out.diagonal(dim1=-2, dim2=-1).add_(self.a[r])

    # ---- steps (one layer; the drawn block holds A = aI + bW when folded, else b·W or b·Z; H-space full_w
    #      steps get the transposed view)

    def _finish(self, pre: Tensor) -> None:
        """Normalise the pre-activation in place (then F for after_norm) and make it the state."""
        self.state, self.tmp = self.norm_(pre), self.state
        if self.post_act:
            self.state = self.act(self.state)

    def _add_skip(self, pre: Tensor) -> Tensor:
        if self.a_all == 1.0:
            return pre.add_(self.state)
        if self.a_all is None:  # where, not a·H: 0·inf would turn an overflowed γ = ∞ chain's pre into nan
            return pre.add_(torch.where(self.skip, self.state, 0.0))
        return pre  # a = 0: no skip

    def _step_linear(self, coef_t: Tensor) -> None:
        self._finish(torch.bmm(self.state, coef_t, out=self.tmp))  # H Aᵀ = a·H + b·H Wᵀ

    def _step_branch(self, coef_t: Tensor) -> None:
        self._finish(self._add_skip(torch.bmm(self.act(self.state), coef_t, out=self.tmp)))

    def _step_gram(self, coef: Tensor) -> None:
        g = self.state if self.linear else self.act(self.state)  # (Rg, N, d)
        r = torch.linalg.qr(g.mT, mode="r").R  # (Rg, k, N): G Gᵀ = Rᵀ R
        self._finish(self._add_skip(torch.bmm(r.mT, coef, out=self.tmp)))  # Rᵀ (b·Z) =law b·G Wᵀ

    def _step_m(self, coef: Tensor) -> None:
        m = coef @ self.state @ coef.mT  # A M Aᵀ, (Rg, d, d)
        if self.p.norm == "bn_theory":
            scale = m.diagonal(dim1=-2, dim2=-1).add(self.p.eps).rsqrt_()  # (Rg, d)
            m.mul_(scale[:, :, None] * scale[:, None, :])
        elif self.p.renormalize:  # vanilla: Tr M = ‖H‖_F²/N
            m.mul_(self.p.renorm_target() / self.p.n / m.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None])
        self.state = torch.add(m, m.mT, out=self.tmp).mul_(0.5)
        self.tmp = m

    def step_block(self, block: int, on_measure) -> None:
        """Apply the layers of ``block`` (up to last_layer), calling on_measure(layer) at measured layers."""
        views, step, measured = self.views[block % SLOTS], self._step, self.p.measured
        first = block * self.block
        for j in range(min(self.block, self.last_layer - first)):
            step(views[j])
            self.layer = first + j + 1
            if measured(self.layer):
                on_measure(self.layer)

    # ---- measurement

    def representation(self) -> Tensor:
        """(Rg, N, d): the state, or for space=M a stand-in h = √N Λ^{1/2} Vᵀ with hᵀh/N = M."""
        if self.p.space == "H":
            return self.state
        m = self.state.to(torch.float64)
        bad = ~torch.isfinite(m).flatten(-2).all(-1)
        eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
        lam, vec = torch.linalg.eigh(torch.where(bad[:, None, None], eye, m))
        h = (vec * lam.clamp(min=0.0).sqrt()[:, None, :]).mT * math.sqrt(self.p.n)
        return torch.where(bad[:, None, None], torch.nan, h)

    def _measure(self) -> dict[str, Tensor]:
        """{key: (Rg,) float64} of the current layer, in the order of p.metrics (metrics.measure's keys, plus
        the chain metrics that need the reference K)."""
        p, h = self.p, self.representation()
        out: dict[str, Tensor] = {}
        for name in p.metrics:
            if name == "conjecture_gap":
                out[name] = metrics.conjecture_gap(h, self.reference)
            elif name == "reference_gram":
                out.update(reference_summary(self.reference))
            else:
                out.update(metrics.measure(h, [name], tau=p.tau, k=p.top_k, tol=p.rank_tol))
        return out

    def measure(self) -> Tensor:
        """The metrics of the current layer, stacked to (K, Rg) float64 (keys in :meth:`keys`' order)."""
        return torch.stack(list(self._measure().values()))

    def keys(self) -> list[str]:
        return list(self._measure())


def reference_summary(k: Tensor) -> dict[str, Tensor]:
    """From K (R, N, N): ``ref_max_dev`` = max_ij |K − I/N|_ij and ``ref_mean_offdiag`` = mean_{i≠j} K_ij."""
    n = k.shape[-1]
    eye = torch.eye(n, dtype=k.dtype, device=k.device)
    off = (k * (1 - eye)).sum((-2, -1)) / max(1, n * (n - 1))
    return {"ref_max_dev": (k - eye / n).abs().flatten(-2).amax(-1), "ref_mean_offdiag": off}


def reference_gram(p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device) -> Tensor:
    """K = (1/T) Σ_{ℓ=1..T} G_ℓ/tr G_ℓ (R, N, N) float64, T = p.reference_depth, G = HᵀH the sample Gram of a
    separate chain per replicate: the same recurrence, started from a fresh Gaussian input and driven by its
    own generator (seed :func:`~bnexp.chains.draws.reference_seed` of the replicate's seed). The ortho paper's
    stand-in for E_ν[QᵀQ/d] (Appendix F)."""
    q = dataclasses.replace(p, input="gaussian", depth=p.reference_depth, reference_depth=0, burn_in=0,
                            measure_every=1, metrics=("orthogonality_gap",))
    lane = Lane(q, [reference_seed(s) for s in seeds], gammas, device, chunks=1)
    total = torch.zeros(len(seeds), q.n, q.n, dtype=torch.float64, device=device)
    for layer in range(1, q.depth + 1):
        block, j = divmod(layer - 1, lane.block)
        if j == 0:
            lane.draw(0, block)
        lane._step(lane.views[block % SLOTS][j])
        total += metrics.normalized_gram(lane.representation())
    return total / q.depth

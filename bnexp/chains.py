"""Streamed random-matrix chains, batched over replicates (``bnexp simulate``; rank Eqs. 1, 6; markov Eq. 5).

Paper notation: ``H ∈ R^{d×N}``, ``M(H) = H Hᵀ/N``, one step ``H ← BN(H + γ W F(H))``. In code a representation
is ``(N samples, d features)`` and R replicates are stacked into ``h`` of shape ``(R, N, d)``, so the paper's
``W H`` is ``h @ Wᵀ`` and ``(I + γW) H`` is ``h @ (I + γW)ᵀ``. Recurrences (γ = inf means "no skip"):

* ``act_order=branch``:     ``H ← N(H + γ W F(H))``;  γ = inf: ``H ← N(W F(H))``
* ``act_order=after_norm``: ``H ← F(N(H + γ W H))``;  γ = inf: ``H ← F(N(W H))`` (rank paper Fig 2 code)
* ``space=M`` (linear, code-faithful for rank Fig 3): ``M ← D A M Aᵀ D``, ``A = I + γW`` (γ = inf: ``A = W``),
  ``D = (diag(A M Aᵀ) + eps)^{-1/2}``, symmetrised every step. Same W and X as the H chain, so
  ``M_ℓ(M-space) = M(H_ℓ)`` up to rounding; H-space is the default (M-space loses PSD near rank one).

``N`` is the normalisation: ``bn_theory`` ``x/sqrt(mean_batch(x²) + eps)`` per feature (``diag(M)^{-1/2}H``);
``bn_center`` ``(x − μ)/sqrt(var_biased + eps)``; ``none`` (vanilla) the identity, followed when
``renormalize`` is set by a rescale to ``‖H‖_F² = dN`` per replicate (scale-free metrics are unaffected;
``renorm_to=d`` rescales to ``‖H‖_F² = d`` instead, used for markov/table1, which
matters only for a saturating F such as tanh: its vanilla chain collapses at that scale, not at dN).
The input is ``H_0 = N(X)``, so every measured layer lives in the same space.

``sampler=gram`` draws ``W F(H)`` without W: its columns (code orientation) are i.i.d. ``N(0, G Gᵀ)`` with
``G = F(H)`` (N×d), and ``Gᵀ = QR`` gives ``G Gᵀ = RᵀR``, so ``Rᵀ Z`` with ``Z`` ``(min(N, d), d)`` i.i.d.
N(0, 1) has exactly that law (QR instead of a matrix square root: same law, no eigh, no
squared condition number). Cost O(d N²) and N·d normals per layer instead of O(d² N) and d².

RNG contract. Replicate r has seed ``seeds[r]`` and its own ``torch.Generator`` seeded with it. It draws its
input first (float64), then its weights in blocks of ``B`` layers (``B·(numbers per layer) ≥ 2^17``; B depends
on the width, the batch for ``gram``, never on R, dtype, depth or norm). Weights are drawn as float32 and cast
to the chain dtype: on CPU ``normal_`` is ~5× faster in float32, the law is N(0, 1) (or U[-√3, √3]) rounded to
float32, and float32 and float64 chains with the same seed see the same weights. Hence replicate s gives
bit-identical results alone or batched (every batched op here is batch-invariant), and runs that differ only
in ``norm`` (or ``act``, ``act_order``, ``dtype``, ``space``) see the same W sequence. ``chain_inputs`` returns
that X and W sequence.

Execution (CPU). Work is cut into tasks: *draw* (one block of weights for a chunk of replicates; serial per
generator, GIL released inside ``normal_``) and *step* (B layers of one lane, i.e. a group of replicates stepped
by one ``bmm`` per layer). ``threads`` worker threads (the caller's thread among them) run whichever task is
ready with torch's intra-op threads set to 1, so the draws of different generators and the matmuls of
different lanes overlap on all cores, and small matrices are never split over BLAS threads (25–100× slower on
2 cores). ``threads="auto"`` (measured in docs/performance.md): one thread when one layer's
weights over all replicates are fewer than 1000 numbers (≈ 4 µs of draws, less than what a second thread
costs the step in GIL contention), else every core. Lanes: one, unless a step's
matmul costs more than drawing its weights (then ``threads`` lanes: the matmuls are the critical path). A
single chain whose matmul costs more than twice its draws (float64 at d ≥ 256) runs serially with every core
as BLAS threads instead. On CUDA everything runs in the caller's thread, on the device, with one host transfer
per measured layer.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from bnexp import metrics
from bnexp.errors import ConfigError, check_int, check_number
from bnexp.nn.activations import ACTIVATIONS
from bnexp.runtime import DTYPES, check_threads, resolve_device

__all__ = ["ChainParams", "chain_inputs", "run", "simulate", "states"]

NORMS = ("bn_theory", "bn_center", "none")
ACT_ORDERS = ("branch", "after_norm")
WEIGHTS = ("gauss", "unif")
INPUTS = ("gaussian", "collinear", "orthogonal")
SPACES = ("H", "M")
SAMPLERS = ("full_w", "gram")
RENORM_TARGETS = ("dN", "d")
# metrics that need the samples themselves, not only M (space=M measures a stand-in h with hᵀh/N = M)
SAMPLE_METRICS = frozenset({"mean_abs_cosine", "mean_cosine"})

RNG_BLOCK = 2**17  # random numbers per replicate per block: amortises per-task overhead (contract: fixed)
_SLOTS = 2  # weight blocks in flight per lane (double buffering: draw block k+1 while stepping block k)
_AUTO_MIN_NUMBERS = 1000  # auto threads: fewer weight numbers per layer (all replicates) than this → 1 thread
_FLUSH_LAYERS = 256  # run(): measured layers buffered before writer.append
_FLUSH_SECONDS = 30.0  # ... or this long, whichever comes first


# ------------------------------------------------------------------------------------------------- params


@dataclass
class ChainParams:
    """The ``chain:`` block of configs/simulate.yaml (see the comments there for each key)."""

    width: int = 32
    batch: int | None = None
    depth: int = 1000
    gamma: float = math.inf
    norm: str = "bn_theory"
    renormalize: bool = True
    renorm_to: str = "dN"
    act: str = "linear"
    act_order: str = "branch"
    weights: str = "gauss"
    input: str = "gaussian"
    input_noise: float = 1e-5
    space: str = "H"
    sampler: str = "full_w"
    eps: float = 1e-12
    dtype: str = "float64"
    burn_in: int = 0
    measure_every: int = 1
    metrics: tuple[str, ...] = ("soft_rank", "rank_lower_bound")
    tau: float = 0.5
    top_k: int = 10
    rank_tol: float = 1e-9

    @classmethod
    def from_cfg(cls, chain_cfg: Mapping[str, Any]) -> ChainParams:
        """Build from the ``chain:`` mapping (DictConfig or dict); missing keys keep their defaults."""
        if isinstance(chain_cfg, DictConfig):
            chain_cfg = OmegaConf.to_container(chain_cfg, resolve=True)
        elif not isinstance(chain_cfg, Mapping):
            raise ConfigError("chain", chain_cfg, "must be a mapping of chain options")
        chain_cfg = dict(chain_cfg)
        known = {f.name for f in fields(cls)}
        for key in chain_cfg:
            if key not in known:
                raise ConfigError(f"chain.{key}", chain_cfg[key],
                                  f"unknown key; valid keys: {', '.join(sorted(known))}")
        values = dict(chain_cfg)
        if "metrics" in values and values["metrics"] is not None and not isinstance(values["metrics"], str):
            values["metrics"] = tuple(values["metrics"])
        return cls(**values)

    @property
    def n(self) -> int:
        """N, the number of samples (``batch``, or ``width`` when batch is null)."""
        return self.width if self.batch is None else self.batch

    def coefficients(self, gamma: float | None = None) -> tuple[float, float]:
        """(a, b) with one step's pre-normalisation ``a·H + b·W F(H)``: (1, γ), or (0, 1) for γ = inf."""
        gamma = self.gamma if gamma is None else gamma
        return (0.0, 1.0) if math.isinf(gamma) else (1.0, float(gamma))

    def renorm_target(self) -> float:
        """‖H‖_F² after the vanilla rescale: dN (the BN space's scale) or d (renorm_to=d)."""
        return float(self.width * (self.n if self.renorm_to == "dN" else 1))

    def measured(self, layer: int) -> bool:
        return layer >= self.burn_in and layer % self.measure_every == 0

    def measured_layers(self) -> range:
        """Layers ℓ ∈ {0..depth} with ℓ ≥ burn_in and ℓ % measure_every == 0 (ℓ = 0 is the input)."""
        first = -(-self.burn_in // self.measure_every) * self.measure_every
        return range(first, self.depth + 1, self.measure_every)

    def numbers_per_layer(self) -> int:
        """Random numbers one replicate draws per layer: d² (W) or min(N, d)·d (Gram sampler's Z)."""
        return self.width * (min(self.n, self.width) if self.sampler == "gram" else self.width)

    def block_layers(self) -> int:
        """B: layers per weight block (contract: a function of width, batch and sampler only)."""
        return max(1, -(-RNG_BLOCK // self.numbers_per_layer()))

    def validate(self) -> ChainParams:
        """Raise :class:`ConfigError` naming the first impossible key (``chain.<key>``); return self."""
        def positive_int(key: str, value: Any, minimum: int = 1) -> None:
            check_int(f"chain.{key}", value, minimum)

        def number(key: str, value: Any, lo: float, hi: float = math.inf, *, inf_ok: bool = False) -> None:
            check_number(f"chain.{key}", value, lo, hi, inf_ok=inf_ok)

        def choice(key: str, value: Any, valid: Sequence[str]) -> None:
            if value not in valid:
                raise ConfigError(f"chain.{key}", value, valid)

        positive_int("width", self.width)
        if self.batch is not None:
            positive_int("batch", self.batch)
        positive_int("depth", self.depth)
        if not (isinstance(self.gamma, (int, float)) and not isinstance(self.gamma, bool) and self.gamma >= 0):
            raise ConfigError("chain.gamma", self.gamma, "must be a number ≥ 0 or .inf (no skip connection)")
        choice("norm", self.norm, NORMS)
        if not isinstance(self.renormalize, bool):
            raise ConfigError("chain.renormalize", self.renormalize, [True, False])
        choice("renorm_to", self.renorm_to, RENORM_TARGETS)
        choice("act", self.act, sorted(ACTIVATIONS))
        choice("act_order", self.act_order, ACT_ORDERS)
        choice("weights", self.weights, WEIGHTS)
        choice("input", self.input, INPUTS)
        number("input_noise", self.input_noise, 0.0)
        choice("space", self.space, SPACES)
        choice("sampler", self.sampler, SAMPLERS)
        number("eps", self.eps, 0.0)
        choice("dtype", self.dtype, sorted(DTYPES))
        positive_int("burn_in", self.burn_in, 0)
        if self.burn_in > self.depth:
            raise ConfigError("chain.burn_in", self.burn_in, f"must be ≤ chain.depth={self.depth}")
        positive_int("measure_every", self.measure_every)
        number("tau", self.tau, 0.0, 1.0)
        positive_int("top_k", self.top_k)
        number("rank_tol", self.rank_tol, 0.0)
        if isinstance(self.metrics, str) or not isinstance(self.metrics, Sequence) or not self.metrics:
            raise ConfigError("chain.metrics", self.metrics,
                              f"must be a non-empty list of: {', '.join(metrics.MEASURES)}")
        for name in self.metrics:
            choice("metrics", name, sorted(metrics.MEASURES))
        if len(self.measured_layers()) == 0:
            raise ConfigError("chain.measure_every", self.measure_every,
                              f"no layer in [chain.burn_in={self.burn_in}, chain.depth={self.depth}] is a multiple")
        # combinations
        n, d = self.n, self.width
        if self.input == "orthogonal" and n != d:
            raise ConfigError("chain.batch", self.batch, f"input=orthogonal (√N·I) needs N = chain.width={d}")
        if self.sampler == "gram" and self.weights != "gauss":
            raise ConfigError("chain.sampler", self.sampler, "gram is exact only for Gaussian W (chain.weights=gauss)")
        if self.space == "M":
            if self.act != "linear":
                raise ConfigError("chain.space", self.space, "M-space is exact only for linear chains (act=linear)")
            if self.norm == "bn_center":
                raise ConfigError("chain.space", self.space, "M-space cannot centre; use norm=bn_theory or none")
            if self.sampler != "full_w":
                raise ConfigError("chain.space", self.space, "M-space iterates W M Wᵀ; use sampler=full_w")
            if n != d:
                raise ConfigError("chain.batch", self.batch, f"space=M needs N = chain.width={d}")
            bad = sorted(SAMPLE_METRICS.intersection(self.metrics))
            if bad:
                raise ConfigError("chain.metrics", bad, f"space=M knows only M, not the samples; drop {bad}")
        if n > d:
            for name in self.metrics:
                if name in metrics.REQUIRES_N_LE_D:
                    raise ConfigError("chain.batch", n, f"metric {name} needs N ≤ chain.width={d} (it is +inf when "
                                      "there are more samples than features)")
        return self


def _check_gammas(gammas: Sequence[float], replicates: int) -> list[float]:
    gammas = [float(g) for g in gammas]
    if len(gammas) != replicates:
        raise ConfigError("gammas", gammas, f"needs one γ per seed ({replicates})")
    for g in gammas:
        if math.isnan(g) or g < 0:
            raise ConfigError("gammas", g, "each γ must be ≥ 0 or inf")
    return gammas


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds", seeds, "needs at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError("seed", s, "must be a non-negative integer")
    return [int(s) for s in seeds]


# ------------------------------------------------------------------------------------------------- random draws


def _draw_input(p: ChainParams, gen: torch.Generator) -> Tensor:
    """X (N, d) in float64 on the generator's device: the first draw of a replicate."""
    n, d = p.n, p.width
    if p.input == "gaussian":
        return torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device)
    if p.input == "collinear":  # released fig3b code: the constant ‖x‖² (xᵀx of a vector) plus tiny noise
        x = torch.randn(d, generator=gen, dtype=torch.float64, device=gen.device)
        z = torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device)
        return (x @ x) * torch.ones(n, d, dtype=torch.float64, device=gen.device) + p.input_noise * z
    return math.sqrt(n) * torch.eye(n, d, dtype=torch.float64, device=gen.device)  # orthogonal: M_0 = I


def _draw_weights(p: ChainParams, gen: torch.Generator, out: Tensor) -> Tensor:
    """Fill float32 ``out`` (B, rows, d) with one block: N(0, 1), or U[-√3, √3] (unit variance)."""
    if p.weights == "gauss":
        return torch.randn(out.shape, generator=gen, out=out)
    return out.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)


def _weight_shape(p: ChainParams) -> tuple[int, int]:
    """Per-layer shape of a draw: W (d, d), or the Gram sampler's Z (min(N, d), d)."""
    return (min(p.n, p.width), p.width) if p.sampler == "gram" else (p.width, p.width)


def chain_inputs(params: ChainParams, seed: int, layers: int, *, device: str | torch.device = "cpu"
                 ) -> tuple[Tensor, Tensor]:
    """The input X (N, d) and the first ``layers`` weight draws (layers, *shape) replicate ``seed`` uses.

    Both float64 on ``device``; the draws are W_1, W_2, ... (or the Gram sampler's Z) before any scaling by
    γ, exactly as the engine consumes them (same generator calls). For checking the engine independently.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    x = _draw_input(params, gen)
    block = params.block_layers()
    blocks = []
    for _ in range(-(-layers // block)):
        blocks.append(_draw_weights(params, gen, torch.empty((block, *_weight_shape(params)), device=device)))
    return x, torch.cat(blocks)[:layers].to(torch.float64)


# ------------------------------------------------------------------------------------------------- one lane


def _bn_theory_(h: Tensor, eps: float) -> Tensor:
    """In place: x / sqrt(mean_batch(x²) + eps) per feature, i.e. diag(M + eps)^{-1/2} H. h (R, N, d)."""
    ms = h.square().mean(dim=-2, keepdim=True)  # (R, 1, d)
    return h.mul_(ms.add_(eps).rsqrt_())


def _bn_center_(h: Tensor, eps: float) -> Tensor:
    """In place: (x − μ) / sqrt(var_biased + eps) per feature, statistics over the batch. h (R, N, d).

    Two passes (centre, then mean of squares): torch.var_mean over a batch dimension is 10–15× slower on CPU.
    """
    h.sub_(h.mean(dim=-2, keepdim=True))
    return h.mul_(h.square().mean(dim=-2, keepdim=True).add_(eps).rsqrt_())


def _renormalize_(h: Tensor, target: float) -> Tensor:
    """In place: rescale each replicate to ‖H‖_F² = target (vanilla chains; 0 or inf give nan, recorded)."""
    norm = torch.linalg.vector_norm(h, dim=(-2, -1), keepdim=True)  # (R, 1, 1)
    return h.mul_(norm.reciprocal_().mul_(math.sqrt(target)))


class _Lane:
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
        shape = _weight_shape(p)
        r = len(seeds)
        # slots (B, Rg, *shape): one layer's coefficients of all replicates are contiguous for the bmm (~15%
        # faster at d = 32 than replicate-major); each replicate draws its block contiguously into a float32
        # stage (one per chunk) and it is scattered, cast and scaled into the slot
        self.slots = [torch.empty((self.block, r, *shape), dtype=self.dtype, device=device) for _ in range(_SLOTS)]
        # per-layer views, made once: Aᵀ (or (b·W)ᵀ) for H-space full_w (h @ Wᵀ), as drawn otherwise
        transpose = p.space == "H" and p.sampler == "full_w"
        self.views = [(slot.mT if transpose else slot).unbind(0) for slot in self.slots]
        self.stages: dict[int, Tensor] = {}  # chunk → float32 (B, *shape) draw buffer
        self.norm_ = {"bn_theory": lambda h: _bn_theory_(h, p.eps), "bn_center": lambda h: _bn_center_(h, p.eps),
                      "none": (lambda h: _renormalize_(h, p.renorm_target())) if p.renormalize else (lambda h: h)
                      }[p.norm]
        self.act = ACTIVATIONS[p.act]
        self.post_act = p.act_order == "after_norm" and p.act != "linear"
        # input
        x = torch.stack([_draw_input(p, g) for g in self.gens]).to(self.dtype)  # (Rg, N, d)
        h = self.norm_(x)
        if p.space == "M":
            self.state = h.mT @ h / p.n  # (Rg, d, d)
            self._step = self._step_m
        else:
            self.state = h
            self._step = self._step_gram if p.sampler == "gram" else (self._step_linear if self.fold else
                                                                         self._step_branch)
        self.tmp = torch.empty_like(self.state)
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
        slot = self.slots[block % _SLOTS]
        stage = self.stages.get(chunk)
        if stage is None:  # float32 draw buffer of this chunk (B, *shape)
            stage = self.stages[chunk] = torch.empty((self.block, *slot.shape[2:]), device=self.device)
        for r in self.chunks[chunk]:
            out = slot[:, r]  # (B, *shape) view, contiguous when B = 1
            if out.dtype == torch.float32 and out.is_contiguous():
                _draw_weights(self.p, self.gens[r], out)
            else:
                out.copy_(_draw_weights(self.p, self.gens[r], stage))  # cast, then scale in the chain dtype
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
        views, step, measured = self.views[block % _SLOTS], self._step, self.p.measured
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

    def measure(self) -> Tensor:
        """metrics.measure of the current layer, stacked to (K, Rg) float64 (keys in measure's order)."""
        p = self.p
        out = metrics.measure(self.representation(), p.metrics, tau=p.tau, k=p.top_k, tol=p.rank_tol)
        return torch.stack(list(out.values()))

    def keys(self) -> list[str]:
        p = self.p
        return list(metrics.measure(self.state[:1, :2, :2], p.metrics, tau=p.tau, k=p.top_k, tol=p.rank_tol))


# ------------------------------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    workers: int  # threads running tasks (the caller's thread included)
    lanes: int  # replicate groups stepped by separate bmm calls
    chunks: int  # replicate groups per lane drawing weights as separate tasks
    intra: int = 1  # torch intra-op threads


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _plan(p: ChainParams, replicates: int, device: torch.device, threads: int | str) -> _Plan:
    """Threads, lanes and draw chunks for a run (module docstring; measured in docs/performance.md)."""
    if device.type != "cpu":
        return _Plan(1, 1, 1)
    if threads == "auto":
        workers = _cores() if replicates * p.numbers_per_layer() >= _AUTO_MIN_NUMBERS else 1
    else:
        workers = int(threads)
    if workers == 1:
        return _Plan(1, 1, 1)
    # per replicate and layer: matmul flops vs weight draws, at effective per-core costs with both cores busy
    # (≈ 40 GFLOP/s in float64, 80 in float32; ≈ 4.5 ns per normal drawn, cast and scattered): split lanes
    # only where the steps, not the draws, are the critical path
    flops = 2.0 * p.n * p.width * (p.width if p.sampler == "full_w" else min(p.n, p.width))
    if p.space == "M":
        flops *= 2
    step_s = flops / (80e9 if p.dtype == "float32" else 40e9)
    draw_s = p.numbers_per_layer() * 4.5e-9
    if replicates == 1 and step_s > 2 * draw_s:  # one chain, matmul-bound: BLAS threads beat overlapping draws
        return _Plan(1, 1, 1, intra=workers)
    lanes = min(replicates, workers) if step_s > draw_s else 1
    return _Plan(workers, lanes, workers)


# ------------------------------------------------------------------------------------------------- engine


class _Engine:
    """Task scheduler over lanes: ``draw`` and ``step`` tasks run by ``workers`` threads (see module doc)."""

    def __init__(self, p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device, plan: _Plan):
        self.p, self.plan = p, plan
        self.layers = p.measured_layers()
        last_layer = self.layers[-1]
        bounds = np.linspace(0, len(seeds), plan.lanes + 1).astype(int)
        self.lanes = []
        for lo, hi in itertools.pairwise(bounds):
            lane = _Lane(p, seeds[lo:hi], gammas[lo:hi], device, plan.chunks)
            lane.last_layer = last_layer  # nothing after the last measured layer is computed
            lane.last_block = (last_layer - 1) // lane.block if last_layer > 0 else -1
            self.lanes.append(lane)
        self.keys = self.lanes[0].keys()
        self.cond = threading.Condition()
        self.results: dict[int, list[Tensor | None]] = {}
        self.error: BaseException | None = None
        self.stop = False
        if p.measured(0):
            for i, lane in enumerate(self.lanes):
                self._store(0, i, lane.measure())

    # ---- bookkeeping (callers hold self.cond unless noted)

    def _store(self, layer: int, lane: int, values: Tensor) -> None:
        slots = self.results.setdefault(layer, [None] * len(self.lanes))
        slots[lane] = values

    def _done(self) -> bool:
        return all(lane.next_step > lane.last_block for lane in self.lanes)

    def _pick(self) -> tuple | None:
        """The next ready task: step the lane furthest behind, else draw the earliest missing block."""
        behind = None
        for lane in self.lanes:
            if not lane.stepping and lane.next_step <= lane.last_block and min(lane.drawn) > lane.next_step:
                if behind is None or lane.layer < behind.layer:
                    behind = lane
        if behind is not None:
            behind.stepping = True
            return ("step", behind, behind.next_step)
        best = None
        for lane in self.lanes:
            for c, block in enumerate(lane.drawn):
                if lane.busy[c] or block > lane.last_block or block >= lane.next_step + _SLOTS:
                    continue
                if best is None or block < best[3]:
                    best = ("draw", lane, c, block)
        if best is not None:
            best[1].busy[best[2]] = True
        return best

    def _execute(self, task: tuple) -> None:
        """Run a task outside the lock, then record its completion (called without the lock held)."""
        if task[0] == "draw":
            _, lane, chunk, block = task
            lane.draw(chunk, block)
            with self.cond:
                lane.busy[chunk] = False
                lane.drawn[chunk] += 1
                self.cond.notify_all()
        else:
            _, lane, block = task
            index = self.lanes.index(lane)

            def on_measure(layer: int) -> None:
                values = lane.measure()
                with self.cond:
                    self._store(layer, index, values)
                    self.cond.notify_all()

            lane.step_block(block, on_measure)
            with self.cond:
                lane.stepping = False
                lane.next_step += 1
                self.cond.notify_all()

    def _worker(self) -> None:
        while True:
            with self.cond:
                task = None
                while not (self.stop or self.error or self._done()):
                    task = self._pick()
                    if task is not None:
                        break
                    self.cond.wait()
            if task is None:
                return
            try:
                self._execute(task)
            except BaseException as exc:  # handed to the caller's thread, which re-raises it
                with self.cond:
                    self.error = exc
                    self.cond.notify_all()
                return

    def __iter__(self) -> Iterator[tuple[int, Tensor]]:
        """Yield (layer, (K, R) float64 tensor on the device) for each measured layer, in order."""
        workers = [threading.Thread(target=self._worker, daemon=True, name=f"bnexp-chain-{i}")
                   for i in range(self.plan.workers - 1)]
        for w in workers:
            w.start()
        try:
            for layer in self.layers:
                while True:
                    with self.cond:
                        if self.error is not None:
                            raise self.error
                        got = self.results.get(layer)
                        if got is not None and all(v is not None for v in got):
                            del self.results[layer]
                            break
                        task = self._pick()
                        if task is None:
                            self.cond.wait()
                            continue
                    try:
                        self._execute(task)
                    except BaseException:
                        with self.cond:
                            self.stop = True
                            self.cond.notify_all()
                        raise
                yield layer, torch.cat(got, dim=1)
        finally:
            with self.cond:
                self.stop = True
                self.cond.notify_all()
            for w in workers:
                w.join()


# ------------------------------------------------------------------------------------------------- public API


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch intra-op threads for the duration of a run (restored afterwards)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def simulate(
    params: ChainParams,
    seeds: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    gammas: Sequence[float] | None = None,
    threads: int | str = "auto",
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Run R = len(seeds) chains and yield ``(layer, {metric: array (R,)})`` for every measured layer.

    Replicate r uses seed ``seeds[r]`` and γ = ``gammas[r]`` (default: ``params.gamma`` for all; inf allowed).
    Validates everything before any work and returns the iterator. Non-finite chains give inf/nan values
    and keep going. ``threads``: ``"auto"`` or the number of CPU threads to run on (module docstring). While
    the iterator runs, torch's intra-op thread count is the plan's (1, except for one matmul-bound chain);
    it is restored when the iterator finishes or is closed.
    """
    params.validate()
    seeds = _check_seeds(seeds)
    gammas = _check_gammas([params.gamma] * len(seeds) if gammas is None else gammas, len(seeds))
    check_threads(threads)
    device = torch.device(device)
    plan = _plan(params, len(seeds), device, threads)
    return _iterate(params, seeds, gammas, device, plan, progress)


def _iterate(p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device, plan: _Plan,
             progress: bool) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    from tqdm.auto import tqdm

    with _torch_threads(plan.intra if device.type == "cpu" else torch.get_num_threads()):
        engine = _Engine(p, seeds, gammas, device, plan)
        with tqdm(total=engine.layers[-1], unit="layer", disable=not progress, desc="chain") as bar:
            for layer, values in engine:
                host = values.cpu().numpy()  # the one host transfer per measured layer
                bar.update(layer - bar.n)
                yield layer, dict(zip(engine.keys, host))


def states(params: ChainParams, seeds: Sequence[int], *, gammas: Sequence[float] | None = None,
           device: str | torch.device = "cpu") -> Iterator[tuple[int, Tensor]]:
    """Yield ``(layer, state)`` for ℓ = 0..depth with the engine's own stepping code, serially.

    state is a copy of H_ℓ (R, N, d) (or M_ℓ (R, d, d) for space=M) in the chain dtype. For tests and
    inspection of short chains; ``simulate`` is the streamed, measured, multi-threaded path.
    """
    params.validate()
    seeds = _check_seeds(seeds)
    gammas = _check_gammas([params.gamma] * len(seeds) if gammas is None else gammas, len(seeds))
    lane = _Lane(params, seeds, gammas, torch.device(device), chunks=1)
    yield 0, lane.state.clone()
    for layer in range(1, params.depth + 1):
        block, j = divmod(layer - 1, lane.block)
        if j == 0:
            lane.draw(0, block)
        lane._step(lane.views[block % _SLOTS][j])
        yield layer, lane.state.clone()


def run(cfg: Any, writer: Any) -> None:
    """``bnexp simulate``: run cfg.chain for seeds seed..seed+n_seeds−1 and append rows to ``writer``.

    Rows are ``(seed, step=layer ℓ, layer=None, metric, value)``, appended every few hundred measured layers
    (or 30 s), so a run that dies leaves a readable prefix.
    """
    params = ChainParams.from_cfg(cfg["chain"]).validate()
    seeds = [int(cfg["seed"]) + r for r in range(int(cfg["n_seeds"]))]
    runtime = cfg.get("runtime") or {}
    threads = runtime.get("threads", "auto")
    device = resolve_device(runtime.get("device", "auto"), "simulate")
    rows: list[tuple[int, int, None, str, float]] = []
    buffered, last_flush = 0, time.monotonic()
    chain = simulate(params, seeds, device=device, progress=bool(runtime.get("progress", False)), threads=threads)
    for layer, values in chain:
        for name, arr in values.items():
            rows.extend((seed, layer, None, name, float(v)) for seed, v in zip(seeds, arr))
        buffered += 1
        if buffered >= _FLUSH_LAYERS or time.monotonic() - last_flush > _FLUSH_SECONDS:
            writer.append(rows)
            rows, buffered, last_flush = [], 0, time.monotonic()
    if rows:
        writer.append(rows)

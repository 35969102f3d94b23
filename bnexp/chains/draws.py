"""Random draws of a replicate: its input X first, then its weights in blocks (the RNG contract).

The deterministic inputs (``orthogonal``, ``basis``, ``near_collinear``, ``spiked``) draw nothing, so the first
weight block is the generator's first draw. The reference chain of ``chain.reference_depth`` (ortho paper
Appendix F) draws from its own generator, seeded with :func:`reference_seed` of the replicate's seed: a stream
independent of the replicate's, so adding a reference chain changes none of the replicate's own draws.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from bnexp.chains.params import ChainParams


def draw_input(p: ChainParams, gen: torch.Generator) -> Tensor:
    """X (N, d) in float64 on the generator's device: the first draw of a replicate."""
    n, d = p.n, p.width
    if p.input == "gaussian":
        return torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device)
    if p.input == "collinear":  # released fig3b code: the constant ‖x‖² (xᵀx of a vector) plus tiny noise
        x = torch.randn(d, generator=gen, dtype=torch.float64, device=gen.device)
        z = torch.randn(n, d, generator=gen, dtype=torch.float64, device=gen.device)
        return (x @ x) * torch.ones(n, d, dtype=torch.float64, device=gen.device) + p.input_noise * z
    eye = torch.eye(n, d, dtype=torch.float64, device=gen.device)  # rows e_1, ..., e_N (N ≤ d)
    if p.input == "orthogonal":
        return math.sqrt(n) * eye  # N = d: M_0 = I
    if p.input == "basis":  # x_j = e_{j+1}: orthonormal samples
        return eye
    x = eye * p.input_noise  # row j (0-indexed): ε e_{j+1}
    x[:, 0] = 1.0 - p.input_noise if p.input == "near_collinear" else 0.0
    x[0, 0] = 1.0  # x_0 = e_1
    return x  # near_collinear: x_j = (1 − ε) e_1 + ε e_{j+1};  spiked: x_j = ε e_{j+1}  (j ≥ 1)


def reference_seed(seed: int) -> int:
    """Seed of the reference chain of replicate ``seed``: a 64-bit hash of (seed, 1) by numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1, np.uint64)[0])


def draw_weights(p: ChainParams, gen: torch.Generator, out: Tensor) -> Tensor:
    """Fill float32 ``out`` (B, rows, d) with one block: N(0, 1), or U[-√3, √3] (unit variance)."""
    if p.weights == "gauss":
        return torch.randn(out.shape, generator=gen, out=out)
    return out.uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)


def weight_shape(p: ChainParams) -> tuple[int, int]:
    """Per-layer shape of a draw: W (d, d), or the Gram sampler's Z (min(N, d), d)."""
    return (min(p.n, p.width), p.width) if p.sampler == "gram" else (p.width, p.width)


def chain_inputs(params: ChainParams, seed: int, layers: int, *, device: str | torch.device = "cpu"
                 ) -> tuple[Tensor, Tensor]:
    """The input X (N, d) and the first ``layers`` weight draws (layers, *shape) replicate ``seed`` uses.

    Both float64 on ``device``; the draws are W_1, W_2, ... (or the Gram sampler's Z) before any scaling by
    γ, exactly as the engine consumes them (same generator calls). For checking the engine independently.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    x = draw_input(params, gen)
    block = params.block_layers()
    blocks = []
    for _ in range(-(-layers // block)):
        blocks.append(draw_weights(params, gen, torch.empty((block, *weight_shape(params)), device=device)))
    return x, torch.cat(blocks)[:layers].to(torch.float64)

"""The ``chain:`` config as a validated dataclass (keys and comments: configs/simulate.yaml)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bnexp import metrics
from bnexp.errors import ConfigError, check_int, check_number
from bnexp.nn.activations import ACTIVATIONS
from bnexp.runtime import DTYPES

# per feature over the batch (BN) or none; then per sample over the features (the nn norms of the same names)
NORMS = ("bn_theory", "bn_center", "none", "layernorm", "rmsnorm", "groupnorm")
PER_SAMPLE_NORMS = frozenset({"layernorm", "rmsnorm", "groupnorm"})
# keys read with their defaults and absent from configs/simulate.yaml, so that the run keys of existing chain runs stay
# (set them with +chain.<key>=...)
OPTIONAL_KEYS = frozenset({"groups"})
ACT_ORDERS = ("branch", "after_norm")
WEIGHTS = ("gauss", "unif")
INPUTS = ("gaussian", "collinear", "orthogonal", "basis", "near_collinear", "spiked")
BASIS_INPUTS = frozenset({"basis", "near_collinear", "spiked"})  # rows built from e_1..e_N: need N ≤ d
BN_SCALES = ("unit_variance", "unit_norm")
SPACES = ("H", "M")
SAMPLERS = ("full_w", "gram")
RENORM_TARGETS = ("dN", "d")
# metrics that need the samples themselves, not only M (space=M measures a stand-in h with hᵀh/N = M)
SAMPLE_METRICS = frozenset({"mean_abs_cosine", "mean_cosine", "conjecture_gap", "reference_gram"})
# metrics the chain computes itself, not in metrics.MEASURES: they need the reference chain's mean Gram K
# (conjecture_gap: ‖G/tr G − K‖_F; reference_gram: the keys ref_max_dev = max|K − I/N| and ref_mean_offdiag)
CHAIN_METRICS = ("conjecture_gap", "reference_gram")
# numerical ranks that count singular values down to float64 resolution (rank_np: σ > σ_max·max(N, d)·2.2e-16,
# rank_abs: σ ≥ 1e-9 of ‖H‖_F): a float32 chain's rounding (≈ 1e-7 relative) lands in that range and counts as rank
# (d = N = 64, BN linear, γ = ∞, 1000–2500 layers: rank_np 64 and rank_abs 62–63 against 15–16 in float64), while
# rank_1/2 and r agree between the two dtypes
FLOAT64_METRICS = frozenset({"rank_np", "rank_abs"})

RNG_BLOCK = 2**17  # random numbers per replicate per block: amortises per-task overhead (contract: fixed)


@dataclass
class ChainParams:
    """The ``chain:`` block of configs/simulate.yaml (see the comments there for each key)."""

    width: int = 32
    batch: int | None = None
    depth: int = 1000
    gamma: float = math.inf
    norm: str = "bn_theory"
    bn_scale: str = "unit_variance"
    renormalize: bool = True
    renorm_to: str = "dN"
    act: str = "linear"
    act_order: str = "branch"
    weights: str = "gauss"
    input: str = "gaussian"
    input_noise: float = 1e-5
    norm_input: bool = True
    space: str = "H"
    sampler: str = "full_w"
    eps: float = 1e-12
    groups: int = 8  # norm=groupnorm: feature groups (optional key, +chain.groups=k; must divide chain.width)
    dtype: str = "float64"
    burn_in: int = 0
    measure_every: int = 1
    metrics: tuple[str, ...] = ("soft_rank", "rank_lower_bound")
    tau: float = 0.5
    top_k: int = 10
    rank_tol: float = 1e-9
    reference_depth: int = 0

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
        positive_int("groups", self.groups)
        if self.norm == "groupnorm" and self.width % self.groups:
            raise ConfigError("chain.groups", self.groups, f"must divide chain.width={self.width} (norm=groupnorm)")
        choice("bn_scale", self.bn_scale, BN_SCALES)
        if not isinstance(self.renormalize, bool):
            raise ConfigError("chain.renormalize", self.renormalize, [True, False])
        choice("renorm_to", self.renorm_to, RENORM_TARGETS)
        choice("act", self.act, sorted(ACTIVATIONS))
        choice("act_order", self.act_order, ACT_ORDERS)
        choice("weights", self.weights, WEIGHTS)
        choice("input", self.input, INPUTS)
        number("input_noise", self.input_noise, 0.0)
        if not isinstance(self.norm_input, bool):
            raise ConfigError("chain.norm_input", self.norm_input, [True, False])
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
        positive_int("reference_depth", self.reference_depth, 0)
        valid_metrics = [*metrics.MEASURES, *CHAIN_METRICS]
        if isinstance(self.metrics, str) or not isinstance(self.metrics, Sequence) or not self.metrics:
            raise ConfigError("chain.metrics", self.metrics,
                              f"must be a non-empty list of: {', '.join(valid_metrics)}")
        for name in self.metrics:
            choice("metrics", name, sorted(valid_metrics))
            if name in CHAIN_METRICS and self.reference_depth < 1:
                raise ConfigError("chain.reference_depth", self.reference_depth,
                                  f"metric {name} needs the reference chain: chain.reference_depth ≥ 1")
        float64_only = sorted(FLOAT64_METRICS.intersection(self.metrics))
        if self.dtype != "float64" and float64_only:
            raise ConfigError("chain.dtype", self.dtype,
                              f"chain.metrics {float64_only} count singular values down to float64 resolution, "
                              f"which {self.dtype} rounding fills with spurious rank; use chain.dtype=float64 or "
                              f"drop {float64_only} from chain.metrics")
        if len(self.measured_layers()) == 0:
            raise ConfigError("chain.measure_every", self.measure_every,
                              f"no layer in [chain.burn_in={self.burn_in}, chain.depth={self.depth}] is a multiple")
        # combinations
        n, d = self.n, self.width
        if self.input == "orthogonal" and n != d:
            raise ConfigError("chain.batch", self.batch, f"input=orthogonal (√N·I) needs N = chain.width={d}")
        if self.input in BASIS_INPUTS and n > d:
            raise ConfigError("chain.batch", self.batch, f"input={self.input} uses e_1..e_N: needs N ≤ chain.width={d}")
        if self.sampler == "gram" and self.weights != "gauss":
            raise ConfigError("chain.sampler", self.sampler, "gram is exact only for Gaussian W (chain.weights=gauss)")
        if self.space == "M":
            if self.act != "linear":
                raise ConfigError("chain.space", self.space, "M-space is exact only for linear chains (act=linear)")
            if self.norm == "bn_center" or self.norm in PER_SAMPLE_NORMS:
                raise ConfigError("chain.space", self.space, f"M-space knows M = HᵀH/N only, which norm={self.norm} "
                                  "cannot act on; use norm=bn_theory or none")
            if self.sampler != "full_w":
                raise ConfigError("chain.space", self.space, "M-space iterates W M Wᵀ; use sampler=full_w")
            if self.bn_scale != "unit_variance":
                raise ConfigError("chain.bn_scale", self.bn_scale, "M-space keeps diag(M) = 1: use unit_variance")
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


def check_gammas(gammas: Sequence[float], replicates: int) -> list[float]:
    gammas = [float(g) for g in gammas]
    if len(gammas) != replicates:
        raise ConfigError("gammas", gammas, f"needs one γ per seed ({replicates})")
    for g in gammas:
        if math.isnan(g) or g < 0:
            raise ConfigError("gammas", g, "each γ must be ≥ 0 or inf")
    return gammas


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("seeds", seeds, "needs at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ConfigError("seed", s, "must be a non-negative integer")
    return [int(s) for s in seeds]

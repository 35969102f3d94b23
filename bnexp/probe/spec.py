"""What a probe measures: the validated ``probe:`` config section and the hidden layers it names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

from omegaconf import DictConfig, ListConfig, OmegaConf

from bnexp import metrics
from bnexp.errors import ConfigError, check_bool, check_int, check_number

__all__ = ["POINTS", "ProbeSpec", "layer_indices"]

POINTS = ("pre", "norm", "post")
# probe.bn_eval — what BN normalises with in the eval-mode passes of training log points (bnexp.training.measures):
# its running averages (PyTorch's eval mode, the low-rank paper's code) or the statistics of the full training set
# (the paper's text, spec lowrank §1.2)
BN_EVAL = ("running", "full_train_stats")


@dataclass(frozen=True)
class ProbeSpec:
    """What a probe measures (config section ``probe``)."""

    metrics: tuple[str, ...] = ("rank_torch", "soft_rank", "rank_lower_bound")
    point: str = "post"
    layers: str | tuple[int, ...] = "all"
    grad_norms: bool = True
    tau: float = 0.5
    top_k: int = 10
    rank_tol: float = 1e-9
    batches: int = 1  # at optim.epochs = 0: this many consecutive probe batches, step = batch index
    input: bool = False  # also the metrics of the flattened input batch, layer = -1
    weight_metrics: tuple[str, ...] = ()  # metrics of every weight matrix W_k, as weight_<metric>, layer = k
    alignment: bool = False  # grad_alignment (A_last) and grad_cosine_full, whole-network rows
    alignment_samples: int = 32  # the first m samples of the probe batch that the alignment uses
    # training log points (bnexp.training.measures.WeightRanks, TrainPass; the low-rank paper): read with
    # defaults, so configs without them compose as before
    weight_ranks: bool = False  # weight_rank, weight_fro per weight matrix; avg_rank, mean_weight_norm, ...
    rank_eps: float = 1e-4  # ε of weight_rank: #{σ_i(W/‖W‖_F) > ε}
    zero_rtol: float = 1e-4  # weight_rank = 0 where ‖W_t‖_F ≤ zero_rtol·‖W_0‖_F
    rank_include_output: bool = False  # avg_rank over the readout too
    spectra: bool = False  # every weight matrix's singular values per log point, in the run directory
    train_pass: bool = False  # train_full_loss, train_full_acc: an eval-mode pass over the training set
    every: int = 1  # training: the probe at steps that are multiples of this (and step 0)
    set_metrics: tuple[str, ...] = ()  # metrics of the logits and last hidden layer per training chunk, averaged
    dist_normalize: bool = False  # weight_distance: each ‖W_t − W_prev‖_F divided by ‖W_prev‖_F
    bn_eval: str = "running"  # eval-mode passes: BN running statistics | full_train_stats (one full-set pass)
    loss: str = "ce"  # the probe batch's loss (its ``loss`` row, gradients): the run's optim.loss, ce | mse

    @property
    def options(self) -> dict:
        """The keyword options of ``metrics.measure`` (soft-rank τ, top-k, rank tolerance)."""
        return {"tau": self.tau, "k": self.top_k, "tol": self.rank_tol}

    @classmethod
    def from_cfg(cls, cfg: DictConfig, depth: int) -> ProbeSpec:
        """Validate ``probe.*`` for a network of ``depth`` hidden layers; raise ConfigError naming the key."""
        names = _metric_names("probe.metrics", cfg.get("metrics"), "rank_torch")
        if cfg.get("point") not in POINTS:
            raise ConfigError("probe.point", cfg.get("point"), POINTS)
        layers = cfg.get("layers")
        if isinstance(layers, (list, tuple, ListConfig)):
            layers = tuple(OmegaConf.to_container(layers) if isinstance(layers, ListConfig) else layers)
        layer_indices(layers, depth)
        tau = check_number("probe.tau", cfg.get("tau"), 0.0, 1.0)
        top_k = check_int("probe.top_k", cfg.get("top_k"), 1)
        tol = check_number("probe.rank_tol", cfg.get("rank_tol"), 0.0, open_lo=True)
        grads = check_bool("probe.grad_norms", cfg.get("grad_norms"))
        batches = check_int("probe.batches", cfg.get("batches", 1), 1)
        inputs = check_bool("probe.input", cfg.get("input", False))
        weight_names = _metric_names("probe.weight_metrics", cfg.get("weight_metrics", []), "isometry_gap")
        alignment = check_bool("probe.alignment", cfg.get("alignment", False))
        samples = check_int("probe.alignment_samples", cfg.get("alignment_samples", 32), 2)
        weight_ranks = check_bool("probe.weight_ranks", cfg.get("weight_ranks", False))
        rank_eps = check_number("probe.rank_eps", cfg.get("rank_eps", 1e-4), 0.0, 1.0, open_lo=True)
        zero_rtol = check_number("probe.zero_rtol", cfg.get("zero_rtol", 1e-4), 0.0, 1.0)
        include_output = check_bool("probe.rank_include_output", cfg.get("rank_include_output", False))
        spectra = check_bool("probe.spectra", cfg.get("spectra", False))
        if spectra and not weight_ranks:
            raise ConfigError("probe.spectra", spectra, "false unless probe.weight_ranks is true (the spectra are "
                              "those of the weight-rank rows)")
        train_pass = check_bool("probe.train_pass", cfg.get("train_pass", False))
        dist_normalize = check_bool("probe.dist_normalize", cfg.get("dist_normalize", False))
        set_names = _metric_names("probe.set_metrics", cfg.get("set_metrics", []), "ortho_gap_spectral")
        every = check_int("probe.every", cfg.get("every", 1), 1)
        bn_eval = cfg.get("bn_eval", "running")
        if bn_eval not in BN_EVAL:
            raise ConfigError("probe.bn_eval", bn_eval, BN_EVAL)
        return cls(metrics=names, point=cfg.point, layers=layers, grad_norms=grads, tau=tau, top_k=top_k,
                   rank_tol=tol, batches=batches, input=inputs, weight_metrics=weight_names, alignment=alignment,
                   alignment_samples=samples, weight_ranks=weight_ranks, rank_eps=rank_eps, zero_rtol=zero_rtol,
                   rank_include_output=include_output, spectra=spectra, train_pass=train_pass,
                   dist_normalize=dist_normalize, bn_eval=bn_eval, set_metrics=set_names,
                   every=every)


def _metric_names(key: str, names, example: str) -> tuple[str, ...]:
    """``names`` as a tuple of ``metrics.MEASURES`` names, else ConfigError naming ``key``."""
    if not isinstance(names, (list, tuple, ListConfig)):
        raise ConfigError(key, names, f"a list of metric names, e.g. [{example}]")
    for name in names:
        if name not in metrics.MEASURES:
            raise ConfigError(key, name, metrics.MEASURES)
    return tuple(names)


def layer_indices(layers: str | Sequence[int], depth: int) -> list[int]:
    """Hidden-layer indices named by ``probe.layers``: ``all``, ``last`` or a list of indices in [0, depth)."""
    if layers == "all":
        return list(range(depth))
    if layers == "last":
        return [depth - 1]
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ConfigError("probe.layers", layers, "all, last, or a non-empty list of hidden-layer indices")
    for index in layers:
        if not isinstance(index, Integral) or isinstance(index, bool) or not 0 <= index < depth:
            raise ConfigError("probe.layers", layers, f"indices must be integers in [0, {depth}) (depth)")
    return sorted(set(int(i) for i in layers))

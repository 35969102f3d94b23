"""Iterative orthogonalization initialisation (ortho paper §5.2, Eq. 6, App E and G; its code's ``improved_init``
for MLPs and ``novel_initialization`` for convnets): the ``svd_orth`` pre-trainer of :mod:`bnexp.training.pretrain`.

One init batch is propagated through the network once, in forward order; each target layer is re-initialised
from the representation that reaches it, before it is applied, so later layers see the re-initialised earlier
ones. In the papers' layout (H ∈ R^{d×n}, H = U Σ Vᵀ, U d×d, V n×d) Eq. 6 reads

    W = V' Σ^{-p} Uᵀ / ‖·‖,   V' ∈ R^{d×d} "obtained by slicing V",   so that W H = V' Σ^{1-p} Vᵀ.

Here rows are samples: the layer's input matrix P (n × D) = U S Vh (``torch.linalg.svd``, full_matrices=False; U
n×k, Vh k×D, k = min(n, D)) is the papers' Hᵀ, so their U is our Vhᵀ and their V our U, and the layer's weight
(out × D, applied as P Wᵀ) is

    W = V' · diag(s[:out]^{-p}) · Vh[:out, :],   scaled so that ‖P Wᵀ‖_F = 1 on the init batch,

with P Wᵀ = U[:, :out] diag(s[:out]^{1-p}) V'ᵀ. This is the MLP code's ``U[:d,:d] · diag(s^{-1}) · Vᵀ`` (D = out = d)
and the conv code's ``u[:wd,:wd] @ diag(s[:wd]^{-1/2}) @ vᵀ[:wd,:]`` (D = C·k², out = wd). Using Vh's transpose
(V) in its place, as ``torch.svd`` returns it, is the third-party reproduction's bug (spec ortho §1.9).

Targets, as in the code: the hidden→hidden Linear layers of an :class:`~bnexp.nn.mlp.MLP` (fc_1 … fc_{depth−1};
fc_0 and the readout keep their init); in any other model every ``nn.Conv2d`` with as many input as output
channels (groups 1), whatever its kernel, stride, dilation and padding. The conv's input P is its (padded, by
the conv's own padding mode) input unfolded into patches, rows ordered (sample, position) as the code's
``unfold(…).transpose(1, 2).reshape(B·P, C·k²)``. A target's bias, if any, is set to 0 (the code's layers have
none or zero biases; a default bias of size 1/√d would drown outputs normalised to ‖P Wᵀ‖_F = 1, entries
~1/√(n·out)); every other parameter is untouched. The layer's input is what the model's own forward feeds it
(its activation, the previous layers' biases, any norm): a forward pre-hook catches it.

Options (``configs/pretrain/svd_orth.yaml``):

``power``  p ∈ {0.5, 1.0}; null: 1.0 for Linear layers (the MLP code, Figs 3–4: full whitening), 0.5 for
           convolutions (the conv code, Fig 7, and the paper's Eq. 6).
``vslice`` V' = ``code``: U[:out, :out], the first ``out`` rows of the first ``out`` left singular vectors (not
           orthogonal unless n = out; the code and the default) | ``haar``: a Haar-random orthogonal out×out per
           layer, drawn from the replicate's ``pretrain`` stream (with p = 1 the outputs' columns are then exactly
           orthonormal up to scale) | ``identity``.
``eps``    s is clamped to ≥ eps · s_max before s^{-p}: dead ReLU features make P rank-deficient, s ≈ 0 and
           s^{-p} explode (p = 1 more so). The count of clamped values is returned. Default 1e-6: a float32
           representation resolves relative singular values down to ~√D·6e-8 only, so smaller ones carry no
           direction; a healthy layer has none (measured: 0 clamped in the quick setups). eps = 0: no clamp
           (the code); a zero singular value then raises FloatingPointError.
``batch_size`` n (null: 3·width for an MLP, the code's 2400 at width 800; 256 images for convs, Fig 7's code);
           the SVD needs min(n·positions, D) ≥ out. ``sample``: ``first`` (the first n training samples, already
           in random order; the code drew a shuffled batch) | ``random`` (drawn from the ``pretrain`` stream).

Computation: each P is cast to float64 for the SVD and the scale; the weight is then cast to the layer's dtype.
The forward itself runs in the model's dtype and mode (:func:`pretrain.pretrain` sets train mode: BN, if any,
uses batch statistics and its running statistics see the init batch once). Cost: one forward and one SVD per
target, e.g. 0.4 s per layer (n 2400, d 800) and 7 s per 256-channel 3×3 conv at 4×4 (4096 × 2304) on one CPU
thread in float64.

Returned statistics (JSON-ready): ``batch_size``; ``layers``, the re-initialised modules' names in forward order;
``power`` per layer type used; ``clamped``, the total number of clamped singular values, and ``clamped_layers``
{name: count} for the layers with any (a warning sign: the representation had lost rank).
"""

from __future__ import annotations

from numbers import Real

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm.auto import tqdm

from bnexp import data
from bnexp.errors import ConfigError, check_bool, check_int, check_number, choose
from bnexp.nn.mlp import MLP

__all__ = ["VSLICES", "orthogonalised_weight", "patches", "svd_orth", "targets", "validate"]

POWERS = (0.5, 1.0)
VSLICES = ("code", "haar", "identity")
SAMPLES = ("first", "random")
CONV_BATCH = 256  # Fig 7's code: bs = 256 training images


def _key(name: str) -> str:
    return f"pretrain.{name}"


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key for an impossible ``svd_orth`` value (keys: pretrain._KEYS)."""
    power = cfg.get("power")
    if power is not None and (isinstance(power, bool) or not isinstance(power, Real) or power not in POWERS):
        raise ConfigError(_key("power"), power, "null (1.0 for Linear layers, 0.5 for convolutions), 0.5 (the "
                          "paper's Eq. 6, the conv code) or 1.0 (the MLP code)")
    choose(_key("vslice"), cfg.get("vslice"), VSLICES)
    check_number(_key("eps"), cfg.get("eps"), 0.0, 1.0)
    if cfg.get("batch_size") is not None:
        check_int(_key("batch_size"), cfg.get("batch_size"), 2)
    choose(_key("sample"), cfg.get("sample"), SAMPLES)
    check_bool(_key("progress"), cfg.get("progress"))


def targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers ``svd_orth`` re-initialises, as (name, module): an MLP's fc_1 … fc_{depth−1}, else every Conv2d
    with in_channels == out_channels. ConfigError when there is none, or for a grouped convolution."""
    if isinstance(model, MLP):
        found = [(f"fc.{l}", fc) for l, fc in enumerate(model.fc) if l > 0]
    else:
        found = [(name, m) for name, m in model.named_modules()
                 if isinstance(m, nn.Conv2d) and m.in_channels == m.out_channels]
        for name, m in found:
            if m.groups != 1:
                raise ConfigError(_key("name"), "svd_orth", f"needs ungrouped convolutions; {name} has groups="
                                  f"{m.groups}")
    if not found:
        raise ConfigError(_key("name"), "svd_orth", f"re-initialises the hidden→hidden Linear layers of an MLP "
                          f"(depth ≥ 2) or Conv2d layers with as many input as output channels; this "
                          f"{type(model).__name__} has none (use pretrain=none)")
    return found


def _pad(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """x padded as ``conv`` pads it (its padding mode; 'same' splits odd totals with the extra on the right)."""
    if isinstance(conv.padding, str):
        totals = [0, 0] if conv.padding == "valid" else [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        (th, tw) = totals
        pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    else:
        ph, pw = conv.padding
        pads = (pw, pw, ph, ph)
    if not any(pads):
        return x
    return F.pad(x, pads, mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode)


def patches(layer: nn.Module, x: Tensor) -> Tensor:
    """The input matrix P (rows, D) of ``layer`` on input x, such that the layer's output without bias is P Wᵀ with
    W = weight.reshape(out, D): a Linear's input flattened to (n, in), or a Conv2d's padded input unfolded,
    (B·P, C·k²) with rows in (sample, position) order and columns in the weight's (c, i, j) order."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, layer.in_features)
    u = F.unfold(_pad(layer, x), layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (B, C·k², P)
    return u.transpose(1, 2).reshape(-1, u.shape[1])


def orthogonalised_weight(p: Tensor, out: int, power: float, vslice: str, eps: float,
                          generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """W = V' diag(max(s, eps·s_max)[:out]^{-power}) Vh[:out] / ‖P Wᵀ‖_F (float64, out × D) from P = U S Vh, and the
    number of clamped singular values among the first ``out``. V' per ``vslice`` (``haar`` draws from
    ``generator`` on the CPU). Needs min(rows, D) ≥ out."""
    p = p.to(torch.float64)
    u, s, vh = torch.linalg.svd(p, full_matrices=False)
    floor = eps * s[0]
    kept = s[:out]
    clamped = int((kept < floor).sum())
    scale = kept.clamp_min(floor).pow(-power)
    if vslice == "code":
        left = u[:out, :out]
    elif vslice == "haar":
        q, r = torch.linalg.qr(torch.randn(out, out, generator=generator, dtype=torch.float64))
        left = (q * torch.sign(torch.diagonal(r))).to(p.device)  # Haar on O(out) (sign-fixed QR)
    else:
        left = torch.eye(out, dtype=torch.float64, device=p.device)
    w = (left * scale) @ vh[:out]
    return w / torch.linalg.matrix_norm(p @ w.mT), clamped


def _init_batch(model: nn.Module, found: list[tuple[str, nn.Module]], x_train: Tensor, cfg: DictConfig,
                generator: torch.Generator) -> Tensor:
    if cfg.get("batch_size") is not None:
        n, rule = int(cfg.batch_size), ""
    elif isinstance(model, MLP):
        n, rule = 3 * found[0][1].in_features, " (null → 3·width)"
    else:
        n, rule = CONV_BATCH, f" (null → {CONV_BATCH} for convolutions)"
    if n > len(x_train):
        raise ConfigError(_key("batch_size"), cfg.get("batch_size"), f"{n}{rule} must be <= the {len(x_train)} "
                          "training samples")
    if cfg.sample == "first":
        return x_train[:n]
    return x_train[torch.randperm(len(x_train), generator=generator)[:n].to(x_train.device)]


def svd_orth(model: nn.Module, x_train: Tensor, cfg: DictConfig, seed: int, bar: tqdm) -> dict:
    """Re-initialise ``model``'s :func:`targets` in place by the iterative orthogonalization (module docstring);
    one forward pass of the init batch, each target set by a forward pre-hook from its input. Statistics as in
    the module docstring. The bar advances once per target."""
    found = targets(model)
    generator = torch.Generator().manual_seed(data.derive_seed(seed, "pretrain"))
    xb = _init_batch(model, found, x_train, cfg, generator)
    powers = {"linear": 1.0 if cfg.power is None else float(cfg.power),
              "conv": 0.5 if cfg.power is None else float(cfg.power)}
    done: list[str] = []
    clamped: dict[str, int] = {}

    def reinit(name: str, layer: nn.Module, args: tuple) -> None:
        if name in done:
            raise RuntimeError(f"svd_orth: {name} is applied more than once per forward (shared weights)")
        p = patches(layer, args[0])
        out = layer.weight.shape[0]
        if min(p.shape) < out:
            raise ConfigError(_key("batch_size"), len(xb), f"too small for {name}: its SVD needs ≥ {out} input "
                              f"rows (samples × positions), the init batch gives {p.shape[0]}")
        power = powers["linear" if isinstance(layer, nn.Linear) else "conv"]
        w, count = orthogonalised_weight(p, out, power, str(cfg.vslice), float(cfg.eps), generator)
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"svd_orth: non-finite weights for {name} (its input has a zero singular "
                                     "value on the init batch); set pretrain.eps > 0")
        layer.weight.copy_(w.reshape(layer.weight.shape))
        if layer.bias is not None:
            layer.bias.zero_()
        done.append(name)
        if count:
            clamped[name] = count
        bar.update(1)

    handles = [layer.register_forward_pre_hook(lambda m, args, name=name: reinit(name, m, args))
               for name, layer in found]
    try:
        with torch.no_grad():
            model(xb)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, _ in found if name not in done]
    if missing:
        raise RuntimeError(f"svd_orth: the forward pass never applied {', '.join(missing)}")
    kinds = {"linear" if isinstance(layer, nn.Linear) else "conv" for _, layer in found}
    return {"batch_size": len(xb), "layers": done, "power": {k: powers[k] for k in sorted(kinds)},
            "clamped": sum(clamped.values()), "clamped_layers": clamped}

"""Rank-maximising pre-training of vanilla networks: Algorithm 1 of the rank paper (App G) in its two released forms.

Trainer hook — one line, after the model is built and before step 0 is measured::

    pretrain_stats = pretrain.pretrain(model, x_train, y_train, cfg.get("pretrain"), seed)  # none → no-op

(``cfg.pretrain`` is the ``pretrain`` config group: ``configs/pretrain/{none,end_to_end,layerwise}.yaml``, and
``svd_orth``: the ortho paper's data-dependent init, :mod:`bnexp.training.svd_init`, with its own statistics; a
config without the group, ``None``, is ``none``; the returned dict of plain numbers suits
``writer.note(pretrain=...)``.) Call it with the trainer's torch threads already set: at quick-scale widths one
thread is ~10× faster than two oversubscribed ones (measured). :func:`validate` checks the node
alone, before any work; :func:`pretrain` calls it again and also checks what needs the model and the data.

Algorithm 1 (rank paper App G): for k = 1..M draw a minibatch X_k of size N; take T gradient steps on
r(H_L(X_k)), the rank lower bound r(H) = Tr(M)² / ‖M‖_F² with M = H Hᵀ/N (papers' d×N layout; here rows are
samples, so M = hᵀh/N, d×d). The released code has two instantiations, and both are here:

``end_to_end`` (``code_fig_4_pre_training.py``, rank Fig 4 / 11 / 12, CIFAR MLPs)
    One random permutation of the training set cut into M sequential minibatches of N (wrapping round to
    its start when the permutation runs out, as the code does); on each, T steps of SGD (no momentum) with
    learning rate ``lr`` on

        f(h) = ‖G‖_F / Tr(G) = r(h)^{-1/2},   G = h hᵀ (N×N Gram),

    h the post-activation output of the last hidden layer. Every parameter that receives a gradient is
    updated (weights, biases, norm affine parameters; the readout gets none). Code: M = 1000, N = 64, T = 40,
    lr = 1e-3. The code's first minibatch is the permutation's second chunk (its first chunk is a leftover
    variable); here the chunks start at the first — immaterial.

``layerwise`` (``code_fig_6.ipynb``, rank Fig 6 / markov Fig 6, Fashion-MNIST depth 32)
    One fixed minibatch of N = 32. For the target layers kk = every, 2·every, … < depth (code: 4, 8, …, 28 of
    30 hidden layers) in increasing order, ``iters`` plain gradient-descent steps of size ``step`` on

        g(z) = Tr(M²) / Tr(M)² = ‖M‖_F² / Tr(M)² = 1/r(z),   M = zᵀz / N,

    z the pre-activation (Linear output) of hidden layer kk. Only the *weights* of the layers that feed kk
    are updated (MLP: fc_0 … fc_kk; biases and every later layer untouched). Iterations: the papers say 25
    ("low") and 75 ("high"); the code ran 5 and 75 with the high model continuing from the low one (5 + 75 per
    layer, two passes over the targets). Default here: the papers' counts, non-cumulative (spec §5 item 10);
    ``cumulative: true`` runs a first pass of ``prior_iters`` steps per target (the code's low model) and then
    the pass of ``iters``, so ``{iters: 75, cumulative: true, prior_iters: 5}`` is the code's high model.

    Decision — the fixed batch: ``sample: first`` (default) is the first N training samples. The code used the
    first batch of its shuffled loader; bnexp's training sets are already in a random order (i.i.d. synthetic
    draws; the real sets are permuted by the ``data`` stream), so the first N samples are a random batch, they
    equal the run's probe batch when N = data.batch_size, and no draw disturbs any other random stream.
    ``sample: random`` takes N samples drawn without replacement from the ``pretrain`` stream instead.

The two objectives are the same function of the spectrum: with λ the nonzero eigenvalues of M (equally of the
N×N Gram), ‖G‖_F/Tr G = ‖M‖_F/Tr M = sqrt(Σλ²)/Σλ = r^{-1/2}, and Tr(M²)/Tr(M)² = Σλ²/(Σλ)² = 1/r. Both are
computed from the smaller of the two Gram matrices (N×N or d×d: identical values), in the model's dtype.
Guards: h is divided by its largest |entry| (detached) first; the objectives are scale invariant
(0-homogeneous), so the value and the gradient are unchanged, while squares of tiny (or huge) activations no
longer underflow (overflow) in float32. An all-zero h (a dead ReLU layer) has no rank information: its
objective is 0 with zero gradient ((Tr M)² is clamped to the smallest normal number), so no step moves the
weights instead of filling them with nan. A non-finite objective otherwise raises ``FloatingPointError``.

What to expect (measured, float32, seeds 0–2; r = r(H_L) before → after): the objectives only have a gradient
where the input still reaches the layer. ``end_to_end`` at width 64, depth 20, glorot normal, 50×10 steps of
lr 1e-3 (spec Fig 4 quick) on raw 0–255 inputs: ``prototypes`` ×255 (1×14×14 or 3×16×16) 1.04–1.08 →
2.5–4.0, ``uniform_images`` 1.02–1.13 → 1.7–4.7; the same net on [0, 1] inputs stays at 1.000 (H_L is the
biases' constant there), as does ``torch_default``, whose second moment shrinks ~6× per layer. ``layerwise``
at depth 16, width 64, glorot normal (spec Fig 6 quick; targets 4, 8, 12): 5 iterations raise mostly the first
target (1.2–1.3 → 2.1–2.9), 25 iterations all three (→ 2.4–4.3); r(H_L), three layers past the last target,
only 1.00 → 1.03 (5) and → 1.15 (25). With ``torch_default`` 25 iterations barely move anything (layer 4:
1.004 → 1.011).

Scope: any model with ``forward_features(x) -> (out, layers)`` (layers[ℓ] = {"pre", "norm", "post"}) and
``weight_layers()``: MLP, ResidualMLP (block ℓ's "pre" is its branch output), ConvNet (flattened maps).
Normalised (BN) models are allowed but not what the papers pre-train: the passes run in train mode, so BN
uses batch statistics and torch BN's running statistics see the pre-training batches, as any training
forward would; ``end_to_end`` also updates BN's γ and β.

Randomness: the ``pretrain`` stream of the replicate seed (``data.derive_seed(seed, "pretrain")``) draws the
permutation (``end_to_end``) or the random batch (``layerwise``, ``sample: random``); nothing else is random,
so one seed gives bit-identical weights on one device. The minibatch order is drawn on the CPU, as
``data.minibatches``, so it is the same on every device.

Returned statistics (plain Python numbers, JSON-ready): ``name``; ``steps``, the gradient steps taken;
``seconds``, the wall time; ``point``, the representation of the objective; ``last_layer`` = L − 1 and
``r_before`` / ``r_after`` = r(H_L) of the last hidden layer at ``point`` on the reference batch
(``end_to_end``: the first pre-training minibatch; ``layerwise``: the fixed batch); ``targets``, the layer(s)
of the objective, ``[{"layer": kk, "r_before": …, "r_after": …}]`` on the same batch. r is
``metrics.rank_lower_bound`` (float64), measured before any step and after the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from numbers import Integral

import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn
from tqdm.auto import tqdm

from bnexp import data, metrics
from bnexp.errors import ConfigError, check_bool, check_int, check_number, choose
from bnexp.training import svd_init

__all__ = ["PRETRAINERS", "inv_rank", "inv_sqrt_rank", "pretrain", "validate"]

POINTS = ("pre", "norm", "post")
SAMPLES = ("first", "random")

# Every key each variant accepts (a typo is an error, not a silently ignored default).
_KEYS = {
    "none": {"name"},
    "end_to_end": {"name", "minibatches", "batch_size", "steps", "lr", "layer", "point", "progress"},
    "layerwise": {"name", "iters", "cumulative", "prior_iters", "step", "batch_size", "every", "layers", "point",
                  "sample", "progress"},
    "svd_orth": {"name", "batch_size", "sample", "power", "vslice", "eps", "progress"},  # bnexp.training.svd_init
}


# ------------------------------------------------------------------------------------------------ objectives


def _gram_terms(h: Tensor) -> tuple[Tensor, Tensor]:
    """(Tr G, ‖G‖_F²) of the Gram matrix of h (n, d) (any (n, ...) is flattened), after dividing h by its largest
    |entry| (detached: exact for the 0-homogeneous objectives, value and gradient). Uses the smaller of h hᵀ
    and hᵀ h, which share their nonzero spectrum."""
    h = h.flatten(1)
    peak = h.detach().abs().amax()
    h = h / torch.where(peak > 0, peak, torch.ones_like(peak))
    g = h @ h.mT if h.shape[0] <= h.shape[1] else h.mT @ h
    return g.diagonal().sum(), g.square().sum()


def inv_rank(h: Tensor) -> Tensor:
    """1/r(h) = Tr(M²)/Tr(M)² = ‖M‖_F²/Tr(M)², M = hᵀh/N (the layerwise objective, ``code_fig_6``).

    Lies in [1/min(n, d), 1]; 0 (with zero gradient) for an all-zero h. A 0-d tensor in h's dtype.
    """
    tr, fro2 = _gram_terms(h)
    # After the peak scaling Tr G ≥ 1 unless h = 0, where the clamp turns 0/0 into 0/tiny = 0.
    return fro2 / (tr * tr).clamp_min(torch.finfo(tr.dtype).tiny)


def inv_sqrt_rank(h: Tensor) -> Tensor:
    """r(h)^{-1/2} = ‖G‖_F/Tr(G), G = h hᵀ (N×N; the end-to-end objective, ``code_fig_4``); equal to ‖M‖_F/Tr M.

    0 (with zero gradient) for an all-zero h. A 0-d tensor in h's dtype.
    """
    inv = inv_rank(h)
    # 1/r ≥ 1/min(n, d) > 0 unless h = 0; the clamp keeps sqrt's infinite slope at 0 out of the gradient.
    return torch.sqrt(inv.clamp_min(torch.finfo(inv.dtype).tiny)) * (inv > 0)


# ------------------------------------------------------------------------------------------------ validation


def _key(name: str) -> str:
    return f"pretrain.{name}"


def _check_bool(cfg: DictConfig, key: str) -> bool:
    return check_bool(_key(key), cfg.get(key))


def validate(cfg: DictConfig | None) -> None:
    """Raise :class:`ConfigError` (key, value, what is valid) for an unknown ``pretrain.name``, an unknown key of
    the chosen variant, or an impossible value. Checks that need the model or the data happen in :func:`pretrain`.
    ``None`` (a config without the group) is valid and means ``none``."""
    if cfg is None:
        return
    name = choose(_key("name"), cfg.get("name"), PRETRAINERS)
    unknown = sorted(set(cfg.keys()) - _KEYS[name])
    if unknown:
        raise ConfigError(_key(unknown[0]), cfg.get(unknown[0]),
                          f"not a key of pretrain {name}; valid keys: {', '.join(sorted(_KEYS[name]))}")
    if name == "none":
        return
    if name == "svd_orth":
        return svd_init.validate(cfg)
    check_int(_key("batch_size"), cfg.get("batch_size"), 2)  # r of one sample is 1 whatever the weights
    choose(_key("point"), cfg.get("point"), POINTS)
    _check_bool(cfg, "progress")
    if name == "end_to_end":
        check_int(_key("minibatches"), cfg.get("minibatches"), 0)
        check_int(_key("steps"), cfg.get("steps"), 0)
        check_number(_key("lr"), cfg.get("lr"), 0.0, open_lo=True)
        layer = cfg.get("layer")
        if isinstance(layer, bool) or not isinstance(layer, Integral):
            raise ConfigError(_key("layer"), layer, "a hidden-layer index (0 = first; negative counts from the "
                              "end, -1 = the last hidden layer)")
    else:
        check_int(_key("iters"), cfg.get("iters"), 0)
        if _check_bool(cfg, "cumulative"):
            check_int(_key("prior_iters"), cfg.get("prior_iters"), 0)
        check_number(_key("step"), cfg.get("step"), 0.0, open_lo=True)
        check_int(_key("every"), cfg.get("every"), 1)
        choose(_key("sample"), cfg.get("sample"), SAMPLES)
        layers = cfg.get("layers")
        if layers is not None:
            if not isinstance(layers, (list, tuple, ListConfig)) or not layers:
                raise ConfigError(_key("layers"), layers, "null (every `every`-th hidden layer) or a non-empty "
                                  "list of hidden-layer indices")
            for v in layers:
                check_int(_key("layers"), v, 0)


# ------------------------------------------------------------------------------------------------ helpers


def _representation(model: nn.Module, x: Tensor, layer: int, point: str) -> Tensor:
    """Hidden layer ``layer``'s ``point`` representation of ``x``, flattened to (n, features)."""
    _, layers = model.forward_features(x)
    return layers[layer][point].flatten(1)


def _depth(model: nn.Module, x: Tensor) -> int:
    """Number of hidden layers (blocks) ``forward_features`` reports, from two samples in eval mode (so that
    this look leaves BN running statistics alone)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return len(model.forward_features(x[:2])[1])
    finally:
        model.train(was_training)


def _r(model: nn.Module, x: Tensor, layers: list[int], point: str) -> list[float]:
    """float64 r(H) (``metrics.rank_lower_bound``) of the given hidden layers at ``point``, one forward."""
    with torch.no_grad():
        _, found = model.forward_features(x)
        return [float(metrics.rank_lower_bound(found[l][point].flatten(1))) for l in layers]


def _weights(model: nn.Module) -> list[Tensor]:
    """The trainable weight matrices of ``model.weight_layers()`` (every Linear/Conv weight when the model has
    no such method)."""
    if hasattr(model, "weight_layers"):
        layers = model.weight_layers()
    else:
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    return [m.weight for m in layers if m.weight.requires_grad]


def _check_model(model: nn.Module, name: str) -> None:
    if name != "svd_orth" and not callable(getattr(model, "forward_features", None)):  # svd_orth: forward hooks
        raise ConfigError(_key("name"), name, f"needs a model with forward_features(x); {type(model).__name__} "
                          "has none (use pretrain=none)")


def _check_batch(cfg: DictConfig, n: int) -> int:
    batch = int(cfg.batch_size)
    if batch > n:
        raise ConfigError(_key("batch_size"), batch, f"must be <= the {n} training samples")
    return batch


def _check_finite(value: Tensor, where: str) -> None:
    if not math.isfinite(float(value)):
        raise FloatingPointError(f"pre-training objective became {float(value)} {where}; lower the step size")


# ------------------------------------------------------------------------------------------------ variants


def _end_to_end(model: nn.Module, x_train: Tensor, cfg: DictConfig, seed: int, bar: tqdm) -> dict:
    batch = _check_batch(cfg, len(x_train))
    depth = _depth(model, x_train)
    layer = int(cfg.layer)
    if not -depth <= layer < depth:
        raise ConfigError(_key("layer"), layer, f"a hidden-layer index in [{-depth}, {depth - 1}] for this "
                          f"depth-{depth} network")
    layer %= depth
    point = str(cfg.point)
    generator = torch.Generator().manual_seed(data.derive_seed(seed, "pretrain"))
    order = torch.randperm(len(x_train), generator=generator).to(x_train.device)
    chunks = len(x_train) // batch  # full minibatches per pass over the permutation; then wrap round

    def minibatch(k: int) -> Tensor:
        c = k % chunks
        return x_train[order[c * batch : (c + 1) * batch]]

    reference = minibatch(0)
    before = _r(model, reference, [layer, depth - 1], point)
    # Plain SGD, no momentum: the code builds a fresh SGD per minibatch, which without momentum is the same.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=float(cfg.lr))
    steps = 0
    for k in range(int(cfg.minibatches)):
        xb = minibatch(k)
        loss = None
        for _ in range(int(cfg.steps)):
            optimizer.zero_grad(set_to_none=True)
            loss = inv_sqrt_rank(_representation(model, xb, layer, point))
            loss.backward()
            optimizer.step()
            steps += 1
        if loss is not None:
            _check_finite(loss.detach(), f"on pre-training minibatch {k}")  # one host sync per minibatch
        bar.update(int(cfg.steps))
    optimizer.zero_grad(set_to_none=True)  # leave no pre-training gradients in .grad
    after = _r(model, reference, [layer, depth - 1], point)
    return {"steps": steps, "point": point, "last_layer": depth - 1, "r_before": before[1], "r_after": after[1],
            "targets": [{"layer": layer, "r_before": before[0], "r_after": after[0]}]}


def _targets(cfg: DictConfig, depth: int) -> list[int]:
    if cfg.get("layers") is not None:
        targets = sorted({int(v) for v in cfg.layers})
        if targets[-1] >= depth:
            raise ConfigError(_key("layers"), list(cfg.layers), f"hidden-layer indices < {depth} (the depth)")
        return targets
    every = int(cfg.every)
    targets = list(range(every, depth, every))
    if not targets:
        raise ConfigError(_key("every"), every, f"selects no hidden layer of this depth-{depth} network (targets "
                          "are every, 2·every, … < depth); lower it or list pretrain.layers")
    return targets


def _layerwise(model: nn.Module, x_train: Tensor, cfg: DictConfig, seed: int, bar: tqdm) -> dict:
    batch = _check_batch(cfg, len(x_train))
    if cfg.sample == "first":
        xb = x_train[:batch]
    else:
        generator = torch.Generator().manual_seed(data.derive_seed(seed, "pretrain"))
        xb = x_train[torch.randperm(len(x_train), generator=generator)[:batch].to(x_train.device)]
    depth = _depth(model, xb)
    targets = _targets(cfg, depth)
    point, step = str(cfg.point), float(cfg.step)
    weights = _weights(model)
    passes = ([int(cfg.prior_iters)] if cfg.cumulative else []) + [int(cfg.iters)]
    before = _r(model, xb, [*targets, depth - 1], point)
    steps = 0
    for iters in passes:
        for kk in targets:
            loss = None
            for _ in range(iters):
                loss = inv_rank(_representation(model, xb, kk, point))
                # Only weights: biases and norm parameters get no update. Weights that do not feed layer kk
                # (later layers, the readout) get no gradient (None) and stay bit-identical.
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                with torch.no_grad():
                    for w, g in zip(weights, grads):
                        if g is not None:
                            w.sub_(step * g)
                steps += 1
            if loss is not None:
                _check_finite(loss.detach(), f"at target layer {kk}")
            bar.update(iters)
    after = _r(model, xb, [*targets, depth - 1], point)
    return {"steps": steps, "point": point, "last_layer": depth - 1, "r_before": before[-1], "r_after": after[-1],
            "targets": [{"layer": kk, "r_before": b, "r_after": a} for kk, b, a in zip(targets, before, after)]}


def _total_steps(cfg: DictConfig, model: nn.Module, x_train: Tensor) -> int:
    if cfg.name == "end_to_end":
        return int(cfg.minibatches) * int(cfg.steps)
    if cfg.name == "svd_orth":
        return len(svd_init.targets(model))
    n_targets = len(_targets(cfg, _depth(model, x_train)))
    return n_targets * (int(cfg.iters) + (int(cfg.prior_iters) if cfg.cumulative else 0))


# Config ``pretrain.name`` → variant ``fn(model, x_train, cfg, seed, bar) -> stats`` (None: do nothing).
PRETRAINERS: dict[str, Callable[[nn.Module, Tensor, DictConfig, int, tqdm], dict] | None] = {
    "none": None,
    "end_to_end": _end_to_end,
    "layerwise": _layerwise,
    "svd_orth": svd_init.svd_orth,  # the ortho paper's iterative orthogonalization init (one pass, no steps)
}


# ------------------------------------------------------------------------------------------------ API


def pretrain(model: nn.Module, x_train: Tensor, y_train: Tensor | None, cfg: DictConfig | None, seed: int) -> dict:
    """Pre-train ``model`` in place by the variant ``cfg.name`` (the ``pretrain`` config node) on ``x_train``.

    ``y_train`` is unused (the objective is unsupervised) and is taken so that the call reads like the rest of
    the trainer. ``name: none`` (or ``cfg`` None: a config without the group) leaves the model untouched and
    returns ``{"name": "none", "steps": 0}``.
    Otherwise returns the statistics listed in the module docstring. The model is left in the mode it had.
    """
    validate(cfg)
    name = "none" if cfg is None else str(cfg.name)
    fn = PRETRAINERS[name]
    if fn is None:
        return {"name": name, "steps": 0}
    _check_model(model, name)
    was_training = model.training
    model.train()  # batch statistics for normalised models, as in the code's pre-training passes
    start = time.perf_counter()
    try:
        total = _total_steps(cfg, model, x_train)
        with tqdm(total=total, desc=f"pretrain {name}", disable=not cfg.progress, leave=False) as bar:
            stats = fn(model, x_train, cfg, seed, bar)
    finally:
        model.train(was_training)
    return {"name": name, **stats, "seconds": time.perf_counter() - start}

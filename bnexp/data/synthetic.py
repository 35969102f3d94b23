"""Synthetic sources, drawn on the CPU in float64 from the ``data`` stream of the data seed.

| name             | inputs (rows are samples)                                     | labels                      |
|------------------|---------------------------------------------------------------|-----------------------------|
| gaussian         | X_ij ~ N(0, 1), dim d_in                                      | argmax_c (X T)_c, teacher T |
| near_identity    | X₀ = (1 − f)·I_d + f·u vᵀ, u, v ~ U[0, 1]^d (d samples)       | uniform in [0, n_classes)   |
| shifted_gaussian | x = offset + N(0, I), shape ``data.shape``                    | uniform in [0, n_classes)   |
| powerlaw         | offset + c·Z diag(k^−α) Vᵀ, shape ``data.shape``              | uniform in [0, n_classes)   |
| prototypes       | s·clip(P_y + N(0, noise²·I), 0, 1), P_c sparse in [0, 1]^shape| balanced, class of P_y      |
| mixture          | μ_y + noise·N(0, I) + offset, μ_c ~ N(0, I), ``data.shape``   | balanced, class of μ_y      |
| teacher          | x ~ N(0, I), shape ``data.shape``                             | argmax_c (W₂ tanh(W₁ x))_c  |
| uniform_images   | X_ij ~ U[low, high] (default U[0, 255]), shape ``data.shape`` | uniform in [0, n_classes)   |

* ``gaussian``: the teacher T (d_in × C) has unit-norm Gaussian columns, so every class is equally likely and
  the task is linear.
* ``near_identity``: the depth paper's Fig 1 input, a near-orthogonal full-rank batch; the test set is an
  independent draw of the same law.
* ``shifted_gaussian``: the ortho paper's Fig 5 stand-in for normalised CIFAR batches (a shared positive
  mean, offset 1.1), image-shaped (C, H, W).
* ``powerlaw``: "image-like" inputs for the depth paper's Table E1 at quick scale. Z has i.i.d. N(0, 1)
  entries, V is a Haar orthogonal d×d matrix, k = 1..d, and c sets the average pixel standard deviation to
  ``pixel_std``; with the offset the values have the scale of raw [0, 1] pixels (not clipped). The decaying
  spectrum plus the offset make the float32 Gram rank of a batch fall below n for large n while the
  float64 rank of X stays n (the defaults α = 0.6, offset 0.45, std 0.2 give about 250 at n = 256 and 245
  at n = 512, full rank at n ≤ 128, and a mean cosine of 0.84, like CIFAR's 0.81).
* ``prototypes``: the rank paper's quick-scale classification task (spec Fig 1 quick, "10 random sparse
  prototypes in [0,1]^196 plus N(0, 0.3²) noise, clipped"; Fig 5 quick, 3×16×16 images). Class c has the
  prototype P_c = B_c ∘ U_c with B_c ~ Bernoulli(sparsity) and U_c ~ U[0, 1] per pixel; a sample of class y is
  s·clip(P_y + ε, 0, 1), ε ~ N(0, noise²) per pixel, s = ``scale`` (1: [0, 1] pixels as /255 images; 255: the
  raw 0–255 pixel values of the rank paper's CIFAR MLP code, under which the input signal, not the biases,
  dominates a deep vanilla net's last layer). Train and test share the prototypes; labels are balanced
  (a random permutation of 0, 1, …, C−1, 0, 1, …: class counts differ by at most one). The task is easy for a
  shallow MLP (2 hidden layers reach > 0.9 training accuracy within a few hundred SGD steps) and the depth
  difficulty comes only from the network: a deep vanilla net whose rank has collapsed stays at chance.
* ``mixture``: the ortho paper's quick stand-in for CIFAR-10 in its training figures (spec §3, Fig 3a/3b/4 quick:
  "mu_c ~ N(0, I_64); x = mu_y + 2·N(0, I_64) + 1.0"; Fig 7 quick: the same law on 3×8×8 images). The class means
  μ_c are drawn once per data seed in the full shape and shared by train and test; the offset (default 1) gives
  every sample the same positive mean, so inputs are correlated like images. Labels are balanced as in
  ``prototypes``. Per class the samples are N(μ_c + offset, noise²·I).
* ``teacher``: the depth paper's quick stand-in for CIFAR-10 training (spec 003 Fig 4 quick: "a synthetic nonlinear
  10-class task, N = 2000, d_in = 64, labels = argmax of a random tanh teacher"). A one-hidden-layer tanh net
  f(x) = W₂ tanh(W₁ x), W₁ ∈ R^{h×d_in} with N(0, 1/d_in) entries, W₂ ∈ R^{C×h} with N(0, 1/h) entries
  (h = ``teacher_width``, d_in = the size of ``data.shape``, flattened), is drawn once per data seed and shared
  by train and test; y = argmax_c f(x)_c. W₁ x has unit variance per unit, so tanh works in its nonlinear range:
  a linear softmax classifier fits about 0.87 of the 2000 training samples and 0.72 of the test samples (the
  labels are a deterministic function of x). Labels are not balanced: at the defaults the rarest class holds
  3.1–8.5 % of the training samples (median 6.1 %, data seeds 0–499) and the largest at most 20 %, so no class
  is starved and the logits are left as drawn (not standardised per class).
* ``uniform_images``: the rank paper's Fig 10 "SGD on random data", inputs i.i.d. U[low, high] (the paper's
  U[0, 255], raw pixel scale) with labels uniform at random and independent of the inputs (the spec's §5 item
  15 prefers CIFAR's own labels; at quick scale there is no CIFAR to take them from).
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from bnexp.data.base import (
    Split,
    check_float_key,
    check_int_key,
    check_shape,
    derive_seed,
)
from bnexp.errors import ConfigError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, "data"))


def _random_labels(n: int, n_classes: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(n_classes, (n,), generator=g)


# ------------------------------------------------------------------------------------------------ gaussian


def check_gaussian(cfg: DictConfig) -> None:
    for key, minimum in (("dim", 1), ("n_classes", 2), ("n_train", 1), ("n_test", 1)):
        check_int_key(cfg, key, minimum)


def gaussian(cfg: DictConfig, seed: int) -> Split:
    """X ~ N(0, 1)^{n × dim}; y = argmax(X T) with T's columns unit-norm Gaussian (a linear teacher)."""
    g = _generator(seed)
    teacher = torch.randn(cfg.dim, cfg.n_classes, generator=g, dtype=torch.float64)
    teacher /= teacher.norm(dim=0)  # equal norms: classes equally likely under isotropic X
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.dim, generator=g, dtype=torch.float64)
    y = (x @ teacher).argmax(1)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


# ------------------------------------------------------------------------------------------------ near_identity


def check_near_identity(cfg: DictConfig) -> None:
    dim = check_int_key(cfg, "dim", 1)
    check_int_key(cfg, "n_classes", 1)
    check_float_key(cfg, "f", 0.0, 1.0)
    for key in ("n_train", "n_test"):
        if cfg.get(key) is not None and cfg.get(key) != dim:
            raise ConfigError(f"data.{key}", cfg.get(key), f"near_identity has d = data.dim = {dim} samples; "
                              "leave it null")
    needed = cfg.get("distinct") or cfg.get("batch_size")
    if isinstance(needed, int) and needed > dim:
        raise ConfigError("data.batch_size", cfg.get("batch_size"), f"must be <= data.dim = {dim} (the samples)")


def near_identity(cfg: DictConfig, seed: int) -> Split:
    """X₀ = (1 − f)·I_d + f·u vᵀ, u, v ~ U[0, 1]^d (``torch.rand``), d samples of dimension d; the test set
    is a second draw."""
    g = _generator(seed)
    d, f = int(cfg.dim), float(cfg.f)

    def draw() -> torch.Tensor:
        u = torch.rand(d, 1, generator=g, dtype=torch.float64)
        v = torch.rand(d, 1, generator=g, dtype=torch.float64)
        return (1 - f) * torch.eye(d, dtype=torch.float64) + f * u @ v.T

    x_train, x_test = draw(), draw()
    return x_train, _random_labels(d, cfg.n_classes, g), x_test, _random_labels(d, cfg.n_classes, g)


# ------------------------------------------------------------------------------------------------ image-shaped


def _check_images(cfg: DictConfig) -> None:
    check_shape(cfg)
    for key, minimum in (("n_classes", 1), ("n_train", 1), ("n_test", 1)):
        check_int_key(cfg, key, minimum)


def check_shifted_gaussian(cfg: DictConfig) -> None:
    _check_images(cfg)
    check_float_key(cfg, "offset")


def shifted_gaussian(cfg: DictConfig, seed: int) -> Split:
    """x = offset + z, z ~ N(0, I) of shape ``data.shape``."""
    g = _generator(seed)
    shape = tuple(cfg.shape)
    x = cfg.offset + torch.randn(cfg.n_train + cfg.n_test, *shape, generator=g, dtype=torch.float64)
    y = _random_labels(len(x), cfg.n_classes, g)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


def check_powerlaw(cfg: DictConfig) -> None:
    _check_images(cfg)
    check_float_key(cfg, "alpha", 0.0)
    check_float_key(cfg, "offset")
    check_float_key(cfg, "pixel_std", 0.0, open_lo=True)


def powerlaw(cfg: DictConfig, seed: int) -> Split:
    """X = offset + c·Z diag(k^−α) Vᵀ (rows are samples), Z i.i.d. N(0, 1), V Haar orthogonal, c such that
    the mean pixel variance c²·Σ_k k^−2α / d is ``pixel_std``²; reshaped to ``data.shape``."""
    g = _generator(seed)
    shape = tuple(cfg.shape)
    d, n = math.prod(shape), cfg.n_train + cfg.n_test
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    v = q * torch.sign(torch.diagonal(r))  # Haar: fix the signs of the QR factor
    s = torch.arange(1, d + 1, dtype=torch.float64) ** -float(cfg.alpha)
    c = cfg.pixel_std * math.sqrt(d / float(s.square().sum()))
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = (cfg.offset + c * (z * s) @ v.T).reshape(n, *shape)
    y = _random_labels(n, cfg.n_classes, g)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]


# ------------------------------------------------------------------------------------------------ classification tasks


def check_prototypes(cfg: DictConfig) -> None:
    _check_images(cfg)
    check_int_key(cfg, "n_classes", 2)
    check_float_key(cfg, "noise", 0.0)
    check_float_key(cfg, "sparsity", 0.0, 1.0, open_lo=True)
    check_float_key(cfg, "scale", 0.0, open_lo=True)


def _balanced_labels(n: int, n_classes: int, g: torch.Generator) -> torch.Tensor:
    """0, 1, …, C−1, 0, 1, … (n of them) in a random order: every class has ⌊n/C⌋ or ⌈n/C⌉ samples."""
    return (torch.arange(n) % n_classes)[torch.randperm(n, generator=g)]


def prototypes(cfg: DictConfig, seed: int) -> Split:
    """x = scale·clip(P_y + ε, 0, 1), ε ~ N(0, noise²) i.i.d., P_c = B_c ∘ U_c (B ~ Bernoulli(sparsity),
    U ~ U[0, 1]).

    Draw order from the ``data`` stream: the C prototypes, then the training split (labels, noise), then the
    test split, so that the training set of a seed does not depend on ``n_test``.
    """
    g = _generator(seed)
    shape, n_classes, noise, scale = tuple(cfg.shape), int(cfg.n_classes), float(cfg.noise), float(cfg.scale)
    mask = torch.rand(n_classes, *shape, generator=g, dtype=torch.float64) < float(cfg.sparsity)
    protos = mask * torch.rand(n_classes, *shape, generator=g, dtype=torch.float64)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = _balanced_labels(n, n_classes, g)
        eps = torch.randn(n, *shape, generator=g, dtype=torch.float64)
        return scale * (protos[y] + noise * eps).clamp_(0.0, 1.0), y

    x_train, y_train = draw(int(cfg.n_train))
    x_test, y_test = draw(int(cfg.n_test))
    return x_train, y_train, x_test, y_test


def check_mixture(cfg: DictConfig) -> None:
    _check_images(cfg)
    check_int_key(cfg, "n_classes", 2)
    check_float_key(cfg, "noise", 0.0)
    check_float_key(cfg, "offset")


def mixture(cfg: DictConfig, seed: int) -> Split:
    """x = μ_y + noise·ε + offset, ε ~ N(0, I) of shape ``data.shape``, μ_c ~ N(0, I) (one per class).

    Draw order from the ``data`` stream: the C class means, then the training split (labels, noise), then the
    test split, so that the training set of a seed does not depend on ``n_test``.
    """
    g = _generator(seed)
    shape, n_classes = tuple(cfg.shape), int(cfg.n_classes)
    noise, offset = float(cfg.noise), float(cfg.offset)
    means = torch.randn(n_classes, *shape, generator=g, dtype=torch.float64)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = _balanced_labels(n, n_classes, g)
        eps = torch.randn(n, *shape, generator=g, dtype=torch.float64)
        return means[y] + noise * eps + offset, y

    x_train, y_train = draw(int(cfg.n_train))
    x_test, y_test = draw(int(cfg.n_test))
    return x_train, y_train, x_test, y_test


def check_teacher(cfg: DictConfig) -> None:
    _check_images(cfg)
    check_int_key(cfg, "n_classes", 2)
    check_int_key(cfg, "teacher_width", 1)


def _draw_teacher(cfg: DictConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    d_in, width, n_classes = math.prod(cfg.shape), int(cfg.teacher_width), int(cfg.n_classes)
    w1 = torch.randn(width, d_in, generator=g, dtype=torch.float64) / math.sqrt(d_in)
    w2 = torch.randn(n_classes, width, generator=g, dtype=torch.float64) / math.sqrt(width)
    return w1, w2


def teacher_weights(cfg: DictConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher (W₁ (h × d_in), N(0, 1/d_in) entries; W₂ (C × h), N(0, 1/h) entries) of data seed ``seed``:
    the first draws of its ``data`` stream, W₁ then W₂."""
    return _draw_teacher(cfg, _generator(seed))


def teacher(cfg: DictConfig, seed: int) -> Split:
    """x ~ N(0, I) of shape ``data.shape``; y = argmax_c (W₂ tanh(W₁ vec(x)))_c with :func:`teacher_weights`.

    Draw order from the ``data`` stream: W₁, W₂, then the training inputs, then the test inputs, so that the
    training set of a seed does not depend on ``n_test``.
    """
    g = _generator(seed)
    w1, w2 = _draw_teacher(cfg, g)
    shape = tuple(cfg.shape)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
        return x, (torch.tanh(x.reshape(n, -1) @ w1.T) @ w2.T).argmax(1)

    x_train, y_train = draw(int(cfg.n_train))
    x_test, y_test = draw(int(cfg.n_test))
    return x_train, y_train, x_test, y_test


def check_uniform_images(cfg: DictConfig) -> None:
    _check_images(cfg)
    low = check_float_key(cfg, "low")
    check_float_key(cfg, "high", low, open_lo=True)


def uniform_images(cfg: DictConfig, seed: int) -> Split:
    """X_ij ~ U[low, high] i.i.d. of shape ``data.shape`` (rank Fig 10: U[0, 255]); labels uniform in
    [0, n_classes), independent of X. Test samples are further draws of the same law."""
    g = _generator(seed)
    shape, n = tuple(cfg.shape), int(cfg.n_train) + int(cfg.n_test)
    low, high = float(cfg.low), float(cfg.high)
    x = low + (high - low) * torch.rand(n, *shape, generator=g, dtype=torch.float64)
    y = _random_labels(n, cfg.n_classes, g)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train :], y[cfg.n_train :]

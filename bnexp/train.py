"""The network engine: ``run(cfg, writer)`` measures a network at initialisation or trains it with SGD.

For each replicate r (seed = cfg.seed + r) it builds the data and the model and writes long rows
``(seed, step, layer, metric, value)``:

* ``optim.epochs = 0`` — one forward of the probe batch (the first ``data.batch_size`` training samples)
  in train mode (batch statistics) and one backward of its mean cross-entropy. Step 0 rows: the
  ``probe.metrics`` of representation ``probe.point`` for each hidden layer ℓ in ``probe.layers``
  (layer = ℓ, 0-indexed: ℓ = 0 is the first hidden layer), ``grad_norm`` per *weight* layer k of
  ``model.weight_layers()`` (layer = k; MLP: k = 0 is fc_0, the input projection, and k = depth the
  readout; ResidualMLP: k = 0 is the input projection, block ℓ is k = ℓ + 1), and ``loss`` (layer empty).
* ``optim.epochs > 0`` — the same probe at step 0 and after every epoch (BN running statistics restored
  after each probe, so measuring never changes training), plus ``train_loss``, ``train_acc``, ``test_loss``
  and ``test_acc`` (layer empty). Step e ≥ 1: ``train_*`` are running means over epoch e's minibatches in
  train mode (weighted by batch size, weights changing); ``test_*`` are eval-mode passes over the test set.
  Step 0: both come from eval-mode passes over the full sets before training (as the depth paper's code).
  Eval passes run in chunks of ``data.batch_size`` (norms without running statistics — bn_theory,
  bn_center — normalise with each chunk's statistics, as in training).

Numerics and devices: the model and inputs are in ``cfg.dtype`` (float64 for init-time runs), metrics and
gradient norms are float64. Weights are drawn on the CPU from a generator seeded with the replicate's seed
(biases and data from independent streams of it, ``data.derive_seed``) and then moved to
``runtime.device``, so a seed gives the same network on every device. Everything per epoch stays on the
device until one transfer for logging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm.auto import tqdm

from bnexp import data, metrics, runtime
from bnexp.errors import ConfigError, check_int, check_number, choose
from bnexp.nn import ACTIVATIONS, INITS, MODELS, NORMS, build_model, init_weights
from bnexp.probe import ProbeSpec, probe, values_to_rows
from bnexp.runtime import DTYPES, check_threads, resolve_device

__all__ = ["OPTIMIZERS", "choose_threads", "evaluate", "make_model", "run",
           "train_epoch", "validate"]

SMALL_WIDTH = 256  # runtime.threads=auto: one BLAS thread up to this width (small per-op work)


def _sgd(cfg: DictConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# Config ``optim.name`` → ``make(optim_cfg, parameters)``.
OPTIMIZERS: dict[str, Callable[[DictConfig, Iterable[nn.Parameter]], torch.optim.Optimizer]] = {"sgd": _sgd}


# ------------------------------------------------------------------------------------------------ validation


def choose_threads(setting, width: int) -> int | None:
    """Torch threads for ``runtime.threads``: an int as given; ``auto`` → 1 for width ≤ 256 (tiny matmuls
    are far faster on one thread), else None (keep the process default)."""
    setting = check_threads(setting)
    if setting == "auto":
        return 1 if width <= SMALL_WIDTH else None
    return setting


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key of the first impossible value, before any work."""
    choose("model.name", cfg.model.get("name"), MODELS)
    depth = check_int("model.depth", cfg.model.get("depth"), 1)
    width = check_int("model.width", cfg.model.get("width"), 1)
    choose("norm.name", cfg.norm.get("name"), NORMS)
    choose("act.name", cfg.act.get("name"), ACTIVATIONS)
    choose("init.name", cfg.init.get("name"), INITS)
    check_number("init.gain", cfg.init.get("gain", 1.0), 0.0, open_lo=True)
    data.validate(cfg.data)
    spec = ProbeSpec.from_cfg(cfg.probe, depth)
    choose("optim.name", cfg.optim.get("name"), OPTIMIZERS)
    epochs = check_int("optim.epochs", cfg.optim.get("epochs"), 0)
    check_number("optim.lr", cfg.optim.get("lr"), 0.0, open_lo=True)
    check_number("optim.momentum", cfg.optim.get("momentum"), 0.0)
    check_number("optim.weight_decay", cfg.optim.get("weight_decay"), 0.0)
    choose("dtype", cfg.get("dtype"), DTYPES)
    runtime.validate(cfg, "train")

    batch = cfg.data.batch_size
    needs = sorted(set(spec.metrics) & metrics.REQUIRES_N_LE_D)
    if needs and batch > width:
        raise ConfigError("data.batch_size", batch, f"probe metric {needs[0]} needs data.batch_size <= "
                          f"model.width = {width} (n <= d), else it is identically +inf")
    n_train = cfg.data.get("n_train")
    if (epochs > 0 and cfg.norm.name != "none" and not cfg.data.get("drop_last", False)
            and n_train is not None and n_train % batch == 1):
        raise ConfigError("data.drop_last", False, "data.n_train % data.batch_size == 1 leaves a last "
                          "minibatch of one sample, which batch norm cannot normalise; set it true")


# ------------------------------------------------------------------------------------------------ parts


def make_model(cfg: DictConfig, d_in: int, n_classes: int, seed: int, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float64) -> nn.Module:
    """The network of ``cfg.model`` / ``cfg.norm`` / ``cfg.act`` with ``cfg.init`` weights for replicate ``seed``.

    Built on the CPU in ``dtype``: construction-time draws (biases keep PyTorch's default law) come from
    the ``model`` stream of the seed, the weights from ``torch.Generator().manual_seed(seed)``; then moved
    to ``device``. Two configs differing only in the norm get the same weights and biases.
    """
    options = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    norm_options = {k: v for k, v in OmegaConf.to_container(cfg.norm, resolve=True).items() if k != "name"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(data.derive_seed(seed, "model"))
        model = build_model(cfg.model.name, d_in=d_in, d_out=n_classes, norm=cfg.norm.name, act=cfg.act.name,
                            norm_kwargs=norm_options or None, **options)
    model.to(dtype)
    init_weights(model, cfg.init.name, gain=cfg.init.get("gain", 1.0), generator=torch.Generator().manual_seed(seed))
    return model.to(device)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """(mean cross-entropy, accuracy) of ``model`` on ``(x, y)`` in eval mode, in chunks of ``batch_size``.

    Returns 0-d float64 tensors on the device (no host sync); the model's mode is restored.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            yb = y[start : start + batch_size]
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").to(torch.float64)
            correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, batch_size: int,
                generator: torch.Generator, *, drop_last: bool = False) -> tuple[Tensor, Tensor]:
    """One epoch of minibatch steps on the mean cross-entropy over a fresh permutation from ``generator``.

    Returns (running mean loss, running accuracy) over the epoch's minibatches, weighted by batch size,
    as 0-d float64 device tensors (no host sync inside the loop).
    """
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    seen = 0
    for idx in data.minibatches(len(x), batch_size, generator, x.device, drop_last=drop_last):
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().to(torch.float64) * len(idx)
        correct += (logits.detach().argmax(1) == yb).sum()
        seen += len(idx)
    return loss_sum / seen, correct / seen


# ------------------------------------------------------------------------------------------------ engine


def _run_replicate(cfg: DictConfig, seed: int, device: torch.device, dtype: torch.dtype, spec: ProbeSpec,
                   writer, bar: tqdm) -> None:
    x_train, y_train, x_test, y_test = data.make_dataset(cfg.data, seed, device, dtype)
    model = make_model(cfg, x_train[0].numel(), int(cfg.data.n_classes), seed, device, dtype)
    x_probe, y_probe = data.probe_batch(x_train, y_train, cfg.data.batch_size)
    batch, epochs = int(cfg.data.batch_size), int(cfg.optim.epochs)

    model.train()  # probes use batch statistics, as in every paper
    items = probe(model, x_probe, y_probe, spec)
    if epochs > 0:
        for prefix, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
            loss, acc = evaluate(model, xs, ys, batch)
            items += [(None, f"{prefix}_loss", loss), (None, f"{prefix}_acc", acc)]
    writer.append(values_to_rows(items, seed, 0))
    bar.update()
    if epochs == 0:
        return

    optimizer = OPTIMIZERS[cfg.optim.name](cfg.optim, model.parameters())
    shuffle = torch.Generator().manual_seed(data.derive_seed(seed, "shuffle"))
    for epoch in range(1, epochs + 1):
        train_loss, train_acc = train_epoch(model, optimizer, x_train, y_train, batch, shuffle,
                                            drop_last=bool(cfg.data.get("drop_last", False)))
        test_loss, test_acc = evaluate(model, x_test, y_test, batch)
        items = [(None, "train_loss", train_loss), (None, "train_acc", train_acc),
                 (None, "test_loss", test_loss), (None, "test_acc", test_acc)]
        items += probe(model, x_probe, y_probe, spec)  # train mode; buffers restored
        rows = values_to_rows(items, seed, epoch)  # the epoch's one host sync
        writer.append(rows)
        logged = {name: value for _, _, layer, name, value in rows if layer is None}
        bar.set_postfix(seed=seed, train_loss=f"{logged['train_loss']:.4g}", test_acc=f"{logged['test_acc']:.3f}")
        bar.update()


def run(cfg: DictConfig, writer) -> None:
    """Validate ``cfg``, then measure (``optim.epochs = 0``) or train every replicate, appending rows to
    ``writer`` (a :class:`bnexp.results.RunWriter` or anything with ``append(rows)`` and ``note(**kw)``)."""
    validate(cfg)
    device = resolve_device(cfg.runtime.device, "train")
    dtype = DTYPES[cfg.dtype]
    spec = ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    previous = torch.get_num_threads()
    threads = choose_threads(cfg.runtime.threads, cfg.model.width) or previous
    writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads)
    total = cfg.n_seeds * (cfg.optim.epochs + 1)
    try:
        torch.set_num_threads(threads)
        with tqdm(total=total, desc=str(cfg.exp_name), disable=not cfg.runtime.progress, leave=False) as bar:
            for r in range(cfg.n_seeds):
                _run_replicate(cfg, cfg.seed + r, device, dtype, spec, writer, bar)
    finally:
        torch.set_num_threads(previous)

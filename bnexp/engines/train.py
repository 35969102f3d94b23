"""The network engine: ``run(cfg, writer)`` measures a network at initialisation or trains it.

Modules with one job each: this one validates the config, builds models (``make_model``) and runs the
init-time probe; :mod:`bnexp.training` trains (``fit``: replicates × learning-rate grid, checkpoints, resume;
``loop``: one training run and its log points; ``measures``, ``precision``, ``optim``, ``pretrain``);
:mod:`bnexp.probe` holds the measurements of a network.

For each replicate r (seed = cfg.seed + r) it builds the data and the model and writes long rows
``(seed, step, layer, metric, value)``:

* ``optim.epochs = 0`` — one forward of the probe batch (the first ``data.batch_size`` training samples) in train
  mode (batch statistics) and one backward of its mean loss (``optim.loss``: cross-entropy by default, ``mse``
  squared error to one-hot targets; :func:`probe_spec`). Step 0 rows: the ``probe.metrics`` of representation
  ``probe.point`` for each hidden layer ℓ in ``probe.layers`` (layer = ℓ, 0-indexed: ℓ = 0 is the first hidden
  layer), ``grad_norm`` per *weight* layer k of ``model.weight_layers()`` (‖∂loss/∂W_k‖, ‖∂loss/∂V_k‖ under
  ``norm=weightnorm``; layer = k; MLP: k = 0 is fc_0, the input projection, and k = depth the readout; ResidualMLP:
  k = 0 is the input projection, block ℓ is k = ℓ + 1), and ``loss`` (layer empty); with ``probe.input`` the probe
  metrics of the flattened input batch (layer = −1), with ``probe.weight_metrics`` the metrics ``weight_<metric>`` of
  every weight matrix W_k (layer = k), with ``probe.alignment`` the directional gradient alignment ``grad_alignment``
  and ``grad_cosine_full`` (layer empty; see :mod:`bnexp.probe`). With ``probe.batches = K`` the same network is
  measured on K probe batches (consecutive chunks of ``data.batch_size`` training samples), written as step = b for
  batch b = 0 … K−1 (weight metrics at step 0 only: the network is the same).
* ``optim.epochs > 0`` — training with ``optim.name`` (sgd | adam) and ``optim.schedule`` (constant | cosine | step,
  stepped every iteration) on minibatches drawn by ``data.sampling`` (shuffle | replacement). The same probe runs at
  step 0 and at every log point (BN running statistics restored after each probe, so measuring never changes
  training), plus ``train_loss``, ``train_acc``, ``test_loss`` and ``test_acc`` (layer empty). Log points:
  ``optim.log_every = null`` → after every epoch, step = epoch; ``optim.log_every = k`` → every k optimiser steps and
  after the last, step = iteration (run.json notes ``step_unit``). ``train_*`` are running means over the minibatches
  since the previous log point (train mode, weights changing, weighted by batch size); ``test_*`` are eval-mode
  passes over the test set. Step 0: both come from passes over the full sets before training with batch statistics
  (torch BN's running statistics are still their initial values then). Passes run in chunks of ``data.batch_size``
  (norms without running statistics — bn_theory, bn_center — normalise with each chunk's statistics, as in training).
  With ``optim.lr_grid`` every replicate is trained at each learning rate from the same initial weights and only the
  run with the lowest final training loss is written, with rows ``lr``, ``grid_lr`` and ``grid_train_loss``
  (:mod:`bnexp.training.fit`). A run directory gets ``checkpoint.pt`` every ``runtime.checkpoint_every`` epochs;
  rerunning a killed run resumes from it and ends with the same metrics.csv as an uninterrupted run. The low-rank
  paper's rows (``probe.weight_ranks``, ``probe.spectra``, ``probe.train_pass``; :mod:`bnexp.training.measures`) are
  training-only: validation refuses them at ``optim.epochs = 0`` (the init-time probe has ``probe.weight_metrics``).

Seeds in one pass: at ``optim.epochs = 0`` the replicates are measured together (``runtime.batch_seeds``: ``auto``
for n_seeds ≥ 2, ``true``, ``false``): every seed's model is built exactly as in the per-seed loop, then all are
stacked and probed in one vmapped forward and one backward (``bnexp.probe.stacked``), in passes of as many seeds as
``probe.seeds_per_pass`` allows; the rows are the loop's (same order) and the numbers agree up to float rounding.
The weights of a pass are initialised on worker threads (one per core, each replicate with its own generator, so the
draws are those of the loop). ``auto`` falls back to the loop when vmap cannot run the model, and notes
``seed_batching`` in ``run.json``; it takes the loop with pre-training or ``norm=weightnorm`` (reparametrized
weights: :mod:`bnexp.nn.weight_norm`). Training (epochs > 0) always runs one replicate at a time.

Numerics and devices: the model and inputs are in ``cfg.dtype`` (float64 for init-time runs, float32 for
training experiments), metrics and gradient norms are float64. Weights are drawn on the CPU from a generator
seeded with the replicate's seed (biases and data from independent streams of it, ``data.derive_seed``) and
then moved to ``runtime.device`` (``auto``: CUDA when available), so a seed gives the same network on every
device. The dataset lives on the device; on CUDA convnets use channels_last, and ``runtime.amp`` (``auto``:
bf16 on CUDA) runs the training forward pass under bf16 autocast with every norm in float32
(:func:`bnexp.training.precision.precision_plan`). Nothing in the step loop waits for the device: one transfer per log
point. CPU runs are reproducible: the same config gives the same metrics.csv byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm.auto import tqdm

from bnexp import data, metrics, runtime
from bnexp.errors import ConfigError, check_bool, check_int, check_number, choose
from bnexp.nn import ACTIVATIONS, INITS, MODELS, NORMS, batch_statistics, build_model, custom, models, reparametrization
from bnexp.nn.models import feature_layers  # (a model's own: the model contract in bnexp.nn.models)
from bnexp.probe import (
    ProbeSpec,
    Stack,
    StackBuilder,
    check_batch_seeds,
    probe,
    probe_stacked,
    seeds_per_pass,
    values_to_rows,
)
from bnexp.runtime import DTYPES, check_threads, resolve_device
from bnexp.training import fit
from bnexp.training.optim import LOSSES, OptimSpec
from bnexp.training.precision import Precision, check_amp, is_conv, precision_plan
from bnexp.training.rng import pretrain_seeded

__all__ = ["Networks", "choose_threads", "feature_layers", "make_model", "probe_spec", "run", "validate"]

SMALL_WIDTH = 256  # runtime.threads=auto: one BLAS thread up to this width (small per-op work), then all cores but one


# ------------------------------------------------------------------------------------------------ validation


def choose_threads(setting, width: int | None) -> int:
    """Torch threads for ``runtime.threads``: an int as given; ``auto`` → 1 for width ≤ 256 (tiny matmuls are
    far faster on one thread), else all of the process's threads but one (one on 2 cores): BLAS threads on every
    core wait for the slowest, 2.1–3.2× slower next to one busy process, against ≤ 1.5× faster on a quiet machine
    (docs/performance.md "Threads"). The vmapped init-time path follows the same rule and builds the next
    pass's models on the other cores."""
    setting = check_threads(setting)
    if setting != "auto":
        return setting
    if width is not None and width <= SMALL_WIDTH:
        return 1
    return max(1, torch.get_num_threads() - 1)


def probe_spec(cfg: DictConfig) -> ProbeSpec:
    """The validated ``probe`` section of ``cfg``, measuring the probe batch's loss with the run's ``optim.loss``
    (its ``loss`` row and the gradients of ``grad_norm``: what the run trains on)."""
    loss = choose("optim.loss", cfg.optim.get("loss", "ce"), LOSSES)
    return dataclasses.replace(ProbeSpec.from_cfg(cfg.probe, feature_layers(cfg)), loss=loss)


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key of the first impossible value, before any work."""
    choose("model.name", cfg.model.get("name"), MODELS)
    models.check_config(cfg)  # depth, width, or the model's own (attention: heads, act; custom: target, kwargs, …)
    choose("norm.name", cfg.norm.get("name"), NORMS)
    choose("act.name", cfg.act.get("name"), ACTIVATIONS)
    choose("init.name", cfg.init.get("name"), INITS)
    check_number("init.gain", cfg.init.get("gain", 1.0), 0.0, open_lo=True)
    check_bool("init.zero_bias", cfg.init.get("zero_bias", False))
    data.validate(cfg.data)
    spec = probe_spec(cfg)
    optim = OptimSpec.from_cfg(cfg.optim, cfg.data)
    epochs = optim.epochs
    choose("dtype", cfg.get("dtype"), DTYPES)
    runtime.validate(cfg, prefer_cuda=True)
    section = cfg.get("runtime") or {}
    setting = check_batch_seeds(section.get("batch_seeds", "auto"))
    device = resolve_device(section.get("device", "auto"), prefer_cuda=True)
    precision_plan(device.type, DTYPES[cfg.dtype], check_amp(section.get("amp", "auto")), conv=False)
    check_int("runtime.checkpoint_every", section.get("checkpoint_every", 1), 1)
    check_bool("runtime.keep_checkpoint", section.get("keep_checkpoint", False))
    if cfg.get("pretrain") is not None:
        from bnexp.training import pretrain

        pretrain.validate(cfg.pretrain)
    reparametrized = reparametrization(cfg.norm.name) is not None  # weightnorm: (g, V) trained behind every W
    if setting is True and epochs == 0 and (_pretrainer(cfg) is not None or reparametrized):
        raise ConfigError("runtime.batch_seeds", True, "false or auto with pre-training or norm=weightnorm (each "
                          "seed is pre-trained on its own; the vmapped probe stacks plain weights)")
    if reparametrized and (cfg.get("pretrain") or {}).get("name") in ("layerwise", "svd_orth"):
        raise ConfigError("pretrain.name", cfg.pretrain.name, f"none or end_to_end with norm={cfg.norm.name} "
                          "(layerwise and svd_orth write W itself, not its g and V)")
    if epochs == 0:
        for key, on in (("probe.weight_ranks", spec.weight_ranks), ("probe.train_pass", spec.train_pass),
                        ("probe.set_metrics", list(spec.set_metrics))):
            if on:
                raise ConfigError(key, on, "false (set_metrics: []) when optim.epochs = 0 (training log-point rows; "
                                  "the init-time probe has probe.weight_metrics)")
    if spec.spectra and optim.lr_grid is not None:
        raise ConfigError("probe.spectra", True, "false with optim.lr_grid (only the chosen learning rate's rows "
                          "are kept; spectra of the others would not match them)")
    if spec.batches > 1:
        if epochs > 0:
            raise ConfigError("probe.batches", spec.batches, "1 when optim.epochs > 0 (steps are epochs); "
                              "several probe batches are measured at initialisation only")
        n_train = cfg.data.get("n_train")
        if n_train is not None and spec.batches * cfg.data.batch_size > n_train:
            raise ConfigError("probe.batches", spec.batches, f"probe.batches · data.batch_size <= data.n_train "
                              f"= {n_train} (consecutive chunks of training samples)")
    batch = cfg.data.batch_size
    needs = sorted(set(spec.metrics) & metrics.REQUIRES_N_LE_D)
    if needs and cfg.model.get("width") is not None and batch > cfg.model.width:
        raise ConfigError("data.batch_size", batch, f"probe metric {needs[0]} needs data.batch_size <= "
                          f"model.width = {cfg.model.width} (n <= d), else it is identically +inf")
    batch_norm = batch_statistics(cfg.norm.name) and models.norm_from_config(cfg.model.name)
    if batch == 1 and batch_norm:
        raise ConfigError("data.batch_size", batch, f">= 2 with norm={cfg.norm.name}: batch norm normalises each "
                          "feature over the minibatch and cannot normalise one sample")
    n_train = cfg.data.get("n_train")
    if (epochs > 0 and batch_norm and not cfg.data.get("drop_last", False)
            and optim.sampling == "shuffle" and n_train is not None and n_train % batch == 1):
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
    model = _construct(cfg, d_in, n_classes, seed, dtype)
    _initialise(cfg, model, seed)
    return model.to(device)


def _is_conv(cfg: DictConfig, d_in: int, n_classes: int, dtype: torch.dtype) -> bool:
    """Whether ``cfg.model`` has convolutions (channels_last on CUDA), read off a copy built on the meta device:
    no memory, no weights drawn."""
    with torch.device("meta"):
        return is_conv(_construct(cfg, d_in, n_classes, 0, dtype))


def _construct(cfg: DictConfig, d_in: int, n_classes: int, seed: int, dtype: torch.dtype) -> nn.Module:
    """make_model's first half: the module on the CPU in ``dtype``, construction draws from the ``model`` stream
    (uses torch's global generator: not thread-safe)."""
    options = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    norm_options = {k: v for k, v in OmegaConf.to_container(cfg.norm, resolve=True).items() if k != "name"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(data.derive_seed(seed, "model"))
        model = build_model(cfg.model.name, d_in=d_in, d_out=n_classes, norm=cfg.norm.name, act=cfg.act.name,
                            norm_kwargs=norm_options or None, **options)
    return model.to(dtype)


def _initialise(cfg: DictConfig, model: nn.Module, seed: int) -> None:
    """make_model's second half: the ``cfg.init`` weights from the seed's own generator (thread-safe), then the
    norm's reparametrization of the drawn weights (``weightnorm``: W = g·V/‖V‖, V = W, g = ‖W‖ row-wise)."""
    custom.initialise(model, cfg.init.name, gain=cfg.init.get("gain", 1.0),  # custom: torch_default keeps its own
                      generator=torch.Generator().manual_seed(seed), zero_bias=bool(cfg.init.get("zero_bias", False)))
    if (reparametrize := reparametrization(cfg.norm.name)) is not None:
        reparametrize(model)


def _probe_batches(cfg: DictConfig, x_train: Tensor, y_train: Tensor, count: int) -> list[tuple[Tensor, Tensor]]:
    """The ``probe.batches`` measurement batches: batch b is ``data.probe_batch`` of the training samples from
    b · data.batch_size on (b = 0: the run's one probe batch)."""
    batch = int(cfg.data.batch_size)
    if count * batch > len(x_train):
        raise ConfigError("probe.batches", count, f"probe.batches · data.batch_size <= the {len(x_train)} "
                          "training samples (consecutive chunks)")
    return [data.probe_batch(x_train[b * batch :], y_train[b * batch :], cfg.data.batch_size, cfg.data.get("distinct"))
            for b in range(count)]


def _pretrainer(cfg: DictConfig) -> Callable[[nn.Module, Tensor, Tensor, int], dict] | None:
    """``bnexp.training.pretrain.pretrain`` bound to ``cfg.pretrain``, or None when the config has no
    pre-training (no ``pretrain`` node, or ``name: none``). Imported only when used."""
    node = cfg.get("pretrain")
    if node is None or node.get("name", "none") == "none":
        return None
    from bnexp.training import pretrain

    return lambda model, x, y, seed: pretrain.pretrain(model, x, y, node, seed)


@dataclass(frozen=True)
class Networks:
    """What ``fit.train_all`` trains for ``cfg`` (``fit.Networks``): models, precision plan, probe batch and
    pre-training, on ``device`` in ``dtype`` with the ``runtime.amp`` setting ``amp``."""

    cfg: DictConfig
    device: torch.device
    dtype: torch.dtype
    amp: str

    def model(self, seed: int, d_in: int) -> nn.Module:
        return make_model(self.cfg, d_in, int(self.cfg.data.n_classes), seed, self.device, self.dtype)

    def precision(self, d_in: int) -> Precision:
        conv = _is_conv(self.cfg, d_in, int(self.cfg.data.n_classes), self.dtype)
        return precision_plan(self.device.type, self.dtype, self.amp, conv)

    def probe_batch(self, x_train: Tensor, y_train: Tensor) -> tuple[Tensor, Tensor]:
        return _probe_batches(self.cfg, x_train, y_train, 1)[0]

    @property
    def pretrainer(self) -> Callable[[nn.Module, Tensor, Tensor, int], dict] | None:
        return _pretrainer(self.cfg)


def _measure_replicate(cfg: DictConfig, seed: int, device: torch.device, dtype: torch.dtype, spec: ProbeSpec,
                       writer, bar: tqdm) -> None:
    """optim.epochs = 0, one seed: the probe of the initialised network on each probe batch."""
    x_train, y_train, *_ = data.make_dataset(cfg.data, seed, device, dtype)
    model = make_model(cfg, x_train[0].numel(), int(cfg.data.n_classes), seed, device, dtype)
    prepare = _pretrainer(cfg)
    if prepare is not None:
        stats = pretrain_seeded(prepare, model, x_train, y_train, seed, device)
        done = dict(getattr(writer, "info", {}).get("pretrain") or {})
        writer.note(pretrain={**done, str(seed): stats})
    probes = _probe_batches(cfg, x_train, y_train, spec.batches)
    model.train()  # probes use batch statistics, as in every paper
    writer.append(values_to_rows(probe(model, *probes[0], spec), seed, 0))
    for b in range(1, len(probes)):  # probe.batches > 1: step = batch index
        writer.append(values_to_rows(probe(model, *probes[b], spec, weights=False), seed, b))
    fit.note_modules(writer, dict(getattr(writer, "info", {})), model)  # (writer.info: what run.json holds)
    bar.update()


def _run_batched(cfg: DictConfig, seeds: list[int], device: torch.device, dtype: torch.dtype, spec: ProbeSpec,
                 writer, bar: tqdm, cores: int, strict: bool) -> bool:
    """The epochs = 0 rows of every seed, in vmapped passes of ``probe.seeds_per_pass`` seeds (module doc).

    A builder thread makes the next pass's data and models (weight inits on ``workers`` threads, each seed
    with its own generator) while the main thread probes the current pass. Returns False, having written
    nothing, when vmap cannot run the model and not ``strict``.
    """
    shared = cfg.data.get("seed") is not None  # every replicate sees the same data: build it once
    cache: dict[int, list[tuple[Tensor, Tensor]]] = {}

    def probes_of(seed: int) -> list[tuple[Tensor, Tensor]]:
        key = -1 if shared else seed
        if key not in cache:
            x_train, y_train, *_ = data.make_dataset(cfg.data, seed, device, dtype)
            cache[key] = [(x.clone(), y.clone()) for x, y in _probe_batches(cfg, x_train, y_train, spec.batches)]
        return cache[key] if shared else cache.pop(key)

    first = probes_of(seeds[0])
    if not shared:
        cache[seeds[0]] = first
    d_in, n_classes = first[0][0][0].numel(), int(cfg.data.n_classes)
    width, depth, batch = int(cfg.model.width), int(cfg.model.depth), int(cfg.data.batch_size)
    per_pass = seeds_per_pass(len(seeds), depth, width, batch, d_in, dtype.itemsize,
                              samples=min(spec.alignment_samples, batch) if spec.alignment else 0)
    chunks = [seeds[i : i + per_pass] for i in range(0, len(seeds), per_pass)]
    threads = choose_threads(cfg.runtime.threads, width)
    workers = max(1, cores) if cfg.runtime.threads == "auto" else 1
    torch.set_num_threads(threads)

    with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as ahead:
        builder = StackBuilder(lambda seed: _construct(cfg, d_in, n_classes, seed, dtype),
                               lambda model, seed: _initialise(cfg, model, seed), seeds, pool, workers)

        def build(chunk: list[int]) -> tuple[list, Stack]:
            return [probes_of(seed) for seed in chunk], builder.build(chunk, device)

        job = ahead.submit(build, chunks[0])
        for index, chunk in enumerate(chunks):
            inputs, stacked = job.result()
            if index + 1 < len(chunks):
                job = ahead.submit(build, chunks[index + 1])  # the next pass's weights, meanwhile
            found: list[list] = []  # [b][r] → items
            for b in range(spec.batches):
                x = torch.stack([probes[b][0] for probes in inputs])
                y = torch.stack([probes[b][1] for probes in inputs])
                try:
                    found.append(probe_stacked(stacked, x, y, spec, weights=b == 0))
                except (RuntimeError, NotImplementedError) as err:
                    if strict or index > 0 or b > 0:
                        raise
                    job.cancel()
                    writer.note(seed_batching=f"loop (vmap failed: {type(err).__name__}: {str(err)[:200]})")
                    return False
            del stacked
            if index == 0:
                writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads, init_workers=workers,
                            seed_batching=f"vmap, {per_pass} seeds per pass, "
                                          f"{'one construction' if builder.shared else 'a model per seed'}")
            rows = []
            for r, seed in enumerate(chunk):
                for b in range(spec.batches):
                    rows += values_to_rows(found[b][r], seed, b)
            writer.append(rows)
            bar.update(len(chunk))
    return True


def run(cfg: DictConfig, writer) -> None:
    """Validate ``cfg``, then measure (``optim.epochs = 0``) or train every replicate, appending rows to
    ``writer`` (a :class:`bnexp.results.RunWriter` or anything with ``append(rows)`` and ``note(**kw)``; a
    writer with a ``directory`` also gets checkpoints, and resumes from one when its ``resume`` is set).

    At epochs = 0 with ``runtime.batch_seeds`` (``auto``: n_seeds ≥ 2) the seeds are probed together in vmapped
    passes (``_run_batched``); otherwise, or when vmap cannot run the model under ``auto``, one at a time.
    Training (epochs > 0) is :func:`bnexp.training.fit.train_all`.
    """
    validate(cfg)
    device = resolve_device(cfg.runtime.device, prefer_cuda=True)
    dtype = DTYPES[cfg.dtype]
    spec = probe_spec(cfg)
    optim = OptimSpec.from_cfg(cfg.optim, cfg.data)
    previous = torch.get_num_threads()
    setting = check_batch_seeds(cfg.runtime.get("batch_seeds", "auto"))
    seeds = [int(cfg.seed) + r for r in range(int(cfg.n_seeds))]
    together = (optim.epochs == 0 and _pretrainer(cfg) is None and reparametrization(cfg.norm.name) is None
                and models.batches_seeds(cfg.model.name)
                and (setting is True or (setting == "auto" and len(seeds) > 1)))
    threads = choose_threads(cfg.runtime.threads, cfg.model.get("width"))  # (the vmapped path: its own)
    try:
        if optim.epochs > 0:
            writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads)
            torch.set_num_threads(threads)
            networks = Networks(cfg, device, dtype, check_amp(cfg.runtime.get("amp", "auto")))
            fit.train_all(cfg, writer, networks, seeds=seeds, device=device, dtype=dtype, spec=spec, optim=optim)
            return
        with tqdm(total=len(seeds), desc=str(cfg.exp_name), disable=not cfg.runtime.progress, leave=False) as bar:
            if together and _run_batched(cfg, seeds, device, dtype, spec, writer, bar, previous, setting is True):
                return
            writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads)
            torch.set_num_threads(threads)
            for seed in seeds:
                _measure_replicate(cfg, seed, device, dtype, spec, writer, bar)
    finally:
        torch.set_num_threads(previous)

"""The network engine's group mode: training runs of one setup that differ only in learning rate, weight decay
(and seed) trained as one stacked model, each writing its own run directory.

The low-rank figures are grids of small networks (``optim.lr`` × ``optim.weight_decay`` × ``data.batch_size``);
one run at a time is bound by per-step overhead. A sweep (:func:`bnexp.launch.launch`, basic launcher) hands its
not-yet-done training runs to :func:`plan`, which groups the runs whose configs agree on everything but
``optim.lr``, ``optim.weight_decay`` and ``seed`` (the seed only where the data does not depend on it:
``data.seed`` set), and :func:`run_group` trains each group of two or more with
:class:`bnexp.training.stacked.StackedSGD`. The runs left over (alone in their group, or not stackable:
:func:`unstackable`) go through the per-run path as before.

What a run of a group writes is what it writes alone: every replicate has its own
:class:`~bnexp.training.loop.Trainer` (model, probe batch, minibatch generator, measurements, spectra sink); the
stacked optimiser does the steps, writes the weights back into the trainers' models after each epoch, and each
trainer measures its log point as the per-run path does (``Trainer.log``, inside the replicate's
``forked_rng(train_seed(seed))``, so the probe draws what it would alone). ``tests/test_train_group.py``: on the
CPU in float64 the metrics.csv and spectra of a group equal those of one-at-a-time runs within 1e-8.

* Divergence: the stacked optimiser freezes a replicate at the step whose loss or gradient is non-finite; its
  training loss at that log point is then nan (alone its weights would have gone non-finite), so
  ``WeightRanks`` flags it ``diverged`` at the same log point, with nan ranks, and its run ends there as alone.
  The other rows of that one log point (test loss, weight norms) are measured on the frozen, last finite
  weights, where a run alone measures its non-finite ones.
* Checkpoints: every ``runtime.checkpoint_every`` epochs each run gets the ``checkpoint.pt`` it would get alone
  (:func:`bnexp.training.fit.checkpoint_state`, the momentum buffer and schedule written back into its
  optimiser), so a killed group resumes as a group — or one run at a time, with ``runtime.stack=false``.
* ``runtime.stack``: ``auto`` (default) groups where possible, ``false`` never. Groups run in the sweeping
  process, so only the basic launcher groups; with joblib or submitit every run is a job of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from bnexp import data, results
from bnexp.engines.train import Networks, choose_threads, probe_spec
from bnexp.errors import ConfigError
from bnexp.results import spectra
from bnexp.runtime import DTYPES, resolve_device
from bnexp.training import checkpoint, fit
from bnexp.training.loop import Trainer
from bnexp.training.optim import LRFactor, OptimSpec
from bnexp.training.precision import PLAIN, check_amp, precision_plan
from bnexp.training.rng import forked_rng, train_seed
from bnexp.training.stacked import StackedBatches, StackedSGD

__all__ = ["STACK_SETTINGS", "check_stack", "group_key", "plan", "run_group", "unstackable"]

STACK_SETTINGS = ("auto", "false")
MODELS = ("mlp", "resblock")  # the architectures bnexp.training.stacked.forward writes out
NORMS = ("bn_torch", "none")
VARYING = ("lr", "weight_decay")  # the optim keys replicates of a group may differ in


def check_stack(cfg: DictConfig) -> str:
    """``runtime.stack``: ``auto`` or ``false`` (YAML's false arrives as a bool)."""
    setting = (cfg.get("runtime") or {}).get("stack", "auto")
    setting = "false" if setting is False else str(setting)
    if setting not in STACK_SETTINGS:
        raise ConfigError("runtime.stack", setting, " or ".join(STACK_SETTINGS))
    return setting


def unstackable(cfg: DictConfig) -> str | None:
    """Why the run of ``cfg`` cannot train in a stacked group, or None when it can."""
    optim = OptimSpec.from_cfg(cfg.optim, cfg.data)
    device = resolve_device(cfg.runtime.get("device", "auto"), prefer_cuda=True)
    reasons = [
        (check_stack(cfg) == "false", "runtime.stack=false"),
        (cfg.get("engine") != "train", f"engine {cfg.get('engine')}"),
        (optim.epochs == 0, "optim.epochs=0 (nothing to train)"),
        (int(cfg.n_seeds) != 1, "n_seeds > 1 (a run's seeds train one after another)"),
        (optim.name != "sgd", f"optim.name={optim.name}"),
        (optim.lr_grid is not None, "optim.lr_grid"),
        (optim.log_every is not None, "optim.log_every (log points inside epochs)"),
        (str(cfg.model.name) not in MODELS, f"model {cfg.model.name}"),
        (str(cfg.norm.name) not in NORMS, f"norm {cfg.norm.name}"),
        (float(cfg.model.get("dropout", 0) or 0) > 0, "dropout"),
        ((cfg.get("pretrain") or {}).get("name", "none") != "none", "pre-training"),
        (precision_plan(device.type, DTYPES[cfg.dtype], check_amp(cfg.runtime.get("amp", "auto")), conv=False)
         != PLAIN, "bf16 autocast (runtime.amp=off stacks)"),
    ]
    return next((why for bad, why in reasons if bad), None)


def group_key(cfg: DictConfig) -> str:
    """Runs with equal keys may train together: the run key's config without ``optim.lr``,
    ``optim.weight_decay`` and — where the data does not depend on it (``data.seed`` set) — ``seed``; plus the
    device and threads, which the group shares."""
    key = results.key_config(cfg)
    key["optim"] = {k: v for k, v in key["optim"].items() if k not in VARYING}
    if (cfg.get("data") or {}).get("seed") is not None:
        key.pop("seed", None)
    section = cfg.get("runtime") or {}
    key["runtime"] = {k: str(section.get(k, "auto")) for k in ("device", "threads", "amp")}
    return json.dumps(key, sort_keys=True, default=str)


def _checkpoint_epoch(directory: Path) -> int | None:
    """The epoch of the run's checkpoint (runs resume together only from the same epoch), None without one."""
    if results.is_done(directory) or not (directory / results.CHECKPOINT).exists():
        return None
    state = checkpoint.load(checkpoint.path_in(directory))
    return None if state is None else int(state["trainer"]["epoch"])


def plan(runs: Sequence[tuple[DictConfig, Path]]) -> list[list[tuple[DictConfig, Path]]]:
    """The stacked groups (two runs or more, in the sweep's order) among the not-yet-done ``runs``."""
    groups: dict[tuple, list] = {}
    for cfg, directory in runs:
        if results.is_done(directory) or unstackable(cfg) is not None:
            continue
        groups.setdefault((group_key(cfg), _checkpoint_epoch(directory)), []).append((cfg, directory))
    return [members for members in groups.values() if len(members) > 1]


def run_group(members: Sequence[tuple[DictConfig, Path]], commands: Mapping[Path, str] | None = None) -> list[Path]:
    """Train ``members`` (one group of :func:`plan`) as one stacked model, each in its run directory under its
    lock (``commands[directory]``: the command recorded in its run.json); returns the directories it computed.
    Runs another process holds, or that are done meanwhile, are left out; with fewer than two left nothing is
    done (the per-run path takes them). An error marks every run of the group failed (rows already written stay)
    and propagates."""
    taken = []
    for cfg, directory in members:
        lock = results.RunLock(directory)
        if not lock.acquire(blocking=False):
            continue
        info = results.read_status(directory)
        if info and info.get("status") == "done":
            lock.release()
            continue
        resume = bool(info) and (directory / results.CHECKPOINT).exists() and (directory / "metrics.csv").exists()
        taken.append((cfg, directory, resume, lock))
    try:
        if len(taken) < 2:
            return []
        device = resolve_device(taken[0][0].runtime.get("device", "auto"), prefer_cuda=True)
        with ExitStack() as stack:
            writers = [stack.enter_context(results.RunWriter(d, cfg, device=str(device), resume=resume,
                                                             command=(commands or {}).get(d)))
                       for cfg, d, resume, _ in taken]
            train_stacked([cfg for cfg, *_ in taken], writers, device)
        return [d for _, d, _, _ in taken]
    finally:
        for *_, lock in taken:
            lock.release()


def train_stacked(cfgs: Sequence[DictConfig], writers: Sequence, device: torch.device) -> None:
    """Train the runs ``cfgs`` (one group) as one stacked model, appending each run's rows to its writer."""
    cfg0 = cfgs[0]
    dtype = DTYPES[cfg0.dtype]
    spec = probe_spec(cfg0)
    optims = [OptimSpec.from_cfg(c.optim, c.data) for c in cfgs]
    optim = optims[0]
    seeds = [int(c.seed) for c in cfgs]
    batch, drop_last = int(cfg0.data.batch_size), bool(cfg0.data.get("drop_last", False))
    runtime_cfg = cfg0.get("runtime") or {}
    every = int(runtime_cfg.get("checkpoint_every", 1))
    previous = torch.get_num_threads()
    threads = choose_threads(runtime_cfg.get("threads", "auto"), int(cfg0.model.width))
    torch.set_num_threads(threads)
    try:
        split = data.make_dataset(cfg0.data, seeds[0], device, dtype)  # one dataset: the group key says so
        d_in, n_train = split[0][0].numel(), len(split[0])
        trainers, notes, states = [], [], []
        for cfg, writer, opt, seed in zip(cfgs, writers, optims, seeds):
            networks = Networks(cfg, device, dtype, check_amp(runtime_cfg.get("amp", "auto")))
            precision = networks.precision(d_in)
            writer.note(device=str(device), dtype=str(cfg.dtype), threads=threads,
                        stacked=f"one model of {len(cfgs)} runs: " + ", ".join(
                            f"lr={o.lr:g} wd={o.weight_decay:g} seed={s}" for o, s in zip(optims, seeds)))
            state, note = fit.open_run(cfg, writer, device, precision, [seed], opt)
            trainer = Trainer(networks.model(seed, d_in), split, networks.probe_batch(split[0], split[1]),
                              seed=seed, lr=opt.lr, optim=opt, spec=spec, batch_size=batch, drop_last=drop_last,
                              precision=precision)
            if getattr(writer, "directory", None) is not None:
                trainer.spectra_sink = (lambda s, t, arrays, d=writer.directory:
                                        spectra.write_spectra(d, s, t, arrays))
            trainers.append(trainer)
            notes.append(note)
            states.append(state)
        _start_together(trainers, writers, states, device)
        sgd = StackedSGD([t.model for t in trainers], split[0].flatten(1), split[1],
                         lrs=[o.lr for o in optims], weight_decays=[o.torch_weight_decay for o in optims],
                         momentum=optim.momentum, loss=optim.loss, wd_on=optim.wd_on,
                         lr_factor=LRFactor(optim.schedule, optim.epochs * trainers[0].steps_per_epoch,
                                            trainers[0].steps_per_epoch, optim.milestones, optim.gamma))
        _load_optimizer_state(sgd, trainers)
        batches = StackedBatches(n_train, batch, [t.shuffle for t in trainers], device, optim.sampling,
                                 trainers[0].steps_per_epoch, drop_last)
        desc = f"{cfg0.exp_name} stacked ×{len(trainers)}"
        with tqdm(total=trainers[0].total_steps, initial=trainers[0].iteration, desc=desc, unit="step",
                  disable=not runtime_cfg.get("progress", True), leave=False) as bar:
            _fit(sgd, batches, trainers, writers, notes, cfgs, device, every, bar)
        if not runtime_cfg.get("keep_checkpoint", False):
            for writer in writers:
                if getattr(writer, "directory", None) is not None:
                    checkpoint.remove(checkpoint.path_in(writer.directory))
    finally:
        torch.set_num_threads(previous)


def _start_together(trainers: list[Trainer], writers: Sequence, states: list, device: torch.device) -> None:
    """Load each run's checkpoint into its trainer, or write its step-0 rows. The members of a group resume from
    the same epoch (:func:`plan`); should a checkpoint have been refused meanwhile, every member starts over."""
    epochs = {state["trainer"]["epoch"] if state else 0 for state in states}
    if len(epochs) > 1:
        for writer, state in zip(writers, states):
            if state is not None:
                writer.truncate(writer.header_bytes)
                spectra.clear(writer.directory)
                writer.note(resumed="no: the group's runs had checkpoints of different epochs; started over")
        states[:] = [None] * len(states)
    for trainer, writer, state in zip(trainers, writers, states):
        if state is not None:
            trainer.load_state_dict(state["trainer"])
        else:
            with forked_rng(device, train_seed(trainer.seed)):
                writer.append(trainer.initial_rows())


def _load_optimizer_state(sgd: StackedSGD, trainers: list[Trainer]) -> None:
    """Resume: the momentum buffers, step count and divergence flags of the trainers' (checkpointed) state."""
    sgd.iteration = trainers[0].iteration
    for r, trainer in enumerate(trainers):
        if trainer.stopped:
            sgd.freeze(r)
        if sgd.buf is None:
            continue
        for name, p in trainer.model.named_parameters():
            buf = trainer.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                slot = next(s for s in sgd.layout.slots if s.name == name)
                sgd.buf[r, slot.start:slot.stop].copy_(buf.reshape(-1))


def _save_optimizer_state(sgd: StackedSGD, r: int, trainer: Trainer) -> None:
    """Write replicate r's momentum buffer and schedule position into its trainer's torch optimiser and
    scheduler, so that its checkpoint is the one it would have made alone."""
    if sgd.buf is not None:
        views = sgd.layout.views(sgd.buf)
        for name, p in trainer.model.named_parameters():
            trainer.optimizer.state[p]["momentum_buffer"] = views[name][r].clone()
    scheduler = trainer.scheduler
    if scheduler is not None:
        scheduler.last_epoch, scheduler._step_count = sgd.iteration, sgd.iteration + 1
        for group, base in zip(trainer.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * sgd.lr_factor(sgd.iteration)
        scheduler._last_lr = [group["lr"] for group in trainer.optimizer.param_groups]


def _fit(sgd: StackedSGD, batches: StackedBatches, trainers: list[Trainer], writers: Sequence, notes: list,
         cfgs: Sequence[DictConfig], device: torch.device, every: int, bar) -> None:
    """The epochs left: stacked steps, then each live replicate's log point from its trainer, then checkpoints."""
    R, epochs = len(trainers), trainers[0].optim.epochs
    live = [not t.stopped for t in trainers]
    loss_sum = torch.zeros(R, dtype=torch.float64, device=device)
    correct = torch.zeros(R, dtype=torch.float64, device=device)
    epoch = trainers[0].epoch
    start = time.perf_counter()
    while epoch < epochs and any(live):
        seen = 0
        for idx in batches.epoch():
            losses, right = sgd.step(idx)
            loss_sum += losses.to(torch.float64) * idx.shape[1]
            correct += right
            seen += idx.shape[1]
            bar.update()
        epoch += 1
        sgd.models()  # the weights back into the trainers' modules
        frozen = sgd.diverged.tolist()
        for r, trainer in enumerate(trainers):
            if not live[r]:
                continue
            trainer.epoch, trainer.iteration = epoch, sgd.iteration
            # a replicate frozen at a non-finite step has no finite training loss (alone, its weights would be nan)
            trainer.loss_sum = loss_sum[r] if not frozen[r] else torch.full_like(loss_sum[r], torch.nan)
            trainer.correct, trainer.seen = correct[r], seen
            with forked_rng(device, train_seed(trainer.seed)):
                writers[r].append(trainer.log(epoch))
            if trainer.stopped:  # diverged, or the early-stop rule: its run ends here, as alone
                live[r] = False
                sgd.freeze(r)
                fit.note_stop(writers[r], notes[r], trainer)
        loss_sum.zero_()
        correct.zero_()
        if epoch % every == 0 or epoch == epochs:
            for r, (trainer, writer) in enumerate(zip(trainers, writers)):
                if getattr(writer, "directory", None) is None:
                    continue
                _save_optimizer_state(sgd, r, trainer)
                with forked_rng(device, train_seed(trainer.seed)):
                    state = fit.checkpoint_state(cfgs[r], device, trainer.precision, trainer, writer, notes[r])
                checkpoint.save(checkpoint.path_in(writer.directory), state)
    for trainer, writer, note in zip(trainers, writers, notes):  # the group's wall time, each run's measure share
        trainer.seconds["train"] = time.perf_counter() - start
        fit.note_timing(writer, note, trainer)

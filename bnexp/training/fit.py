"""Training runs of ``bnexp train`` (``optim.epochs > 0``): replicates, the learning-rate grid, checkpoints, resume.

For each replicate r (seed = cfg.seed + r) and each learning rate — ``optim.lr``, or every point of
``optim.lr_grid`` — a :class:`bnexp.training.loop.Trainer` trains a freshly built model (the same initial weights
and minibatch order for every learning rate: they depend on the seed only) and emits its rows.

Learning-rate grid search (``optim.lr_grid: [lr_1, …, lr_G]``; the rank paper's "grid-searched learning
rate", spec §5 item 7): each replicate trains the full run at every grid point and keeps the one with the
lowest *final training loss* (``train_loss`` of the last log point; nan counts as +inf, ties go to the
earlier point). metrics.csv gets, per seed, only the chosen run's rows — the schema stays
``seed, step, layer, metric, value`` — plus

* ``lr`` at step 0, layer empty: the chosen learning rate;
* ``grid_lr`` and ``grid_train_loss`` at the last step, layer = g (the grid index 0 … G−1): every grid
  point's learning rate and final training loss, so the choice can be checked from the CSV alone.

``run.json`` notes ``lr_search = {seed: {grid, final_train_loss, chosen_lr, chosen_index}}``. The rows of a
grid point are held in memory until the replicate's grid is done (they are part of a checkpoint); progress
bars count each (replicate, grid point) once.

What is trained comes from the engine as one object (:class:`Networks`): the replicate's model, the precision
plan, the fixed probe batch and the optional pre-training.

Pre-training (``cfg.pretrain``, :mod:`bnexp.training.pretrain`; absent or ``name: none`` = none):
``networks.pretrainer(model, x_train, y_train, seed)`` runs once per replicate on the freshly initialised
model, before step 0 is measured, with torch's global generator forked and seeded from the replicate
(:func:`bnexp.training.rng.train_seed` + 1) so that it never shifts the training stream; every grid point
starts from that pre-trained state.
run.json notes its statistics as ``pretrain = {seed: stats}``.

Checkpoints (``runtime.checkpoint_every``: every k epochs, and after the last epoch of each (replicate, grid
point)): ``checkpoint.pt`` in the run directory (:mod:`bnexp.training.checkpoint`) with the trainer's state,
the position (replicate, grid point), the held rows and the size of metrics.csv. ``results.execute`` reopens
an unfinished run that has one without clearing metrics.csv; :func:`train_all` then truncates the file to that
size and continues, so a killed run ends with the same metrics.csv as an uninterrupted one (on the CPU, byte
for byte). A checkpoint made on another device type or precision, or one that does not match the file, is
ignored (the run starts over; run.json notes why). The checkpoint is deleted when the run finishes, unless
``runtime.keep_checkpoint``. Writers without a ``directory`` (tests' in-memory writers) take no checkpoints.

Weight spectra (``probe.spectra``): the trainer hands each log point's spectra to
:func:`bnexp.results.spectra.write_spectra` (``<run>/spectra/seed_<s>/step_<t>.npz``) before its rows are
appended; a run that starts over clears them, a resumed one prunes the files after its checkpoint. Not with
``optim.lr_grid`` (the engine's validation refuses it: only the chosen grid point's rows are kept).

Divergence (``probe.weight_ranks``): a replicate whose log point finds a non-finite parameter or training loss
stops there (``Trainer.stopped``); run.json notes ``diverged: true`` and ``diverged_at = {seed: step}`` (with
``optim.lr_grid`` only the rows say it: a diverged grid point is rarely the one kept), and the run is done (not
failed), so a sweep goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm.auto import tqdm

from bnexp import data
from bnexp.probe import ProbeSpec
from bnexp.results import Row, run_key, spectra
from bnexp.training import checkpoint
from bnexp.training.loop import Trainer
from bnexp.training.optim import OptimSpec
from bnexp.training.precision import Precision
from bnexp.training.rng import forked_rng, pretrain_seeded, rng_state, set_rng_state, train_seed

__all__ = ["Networks", "checkpoint_state", "choose_lr", "note_stop", "note_timing", "open_run", "train_all"]


class Networks(Protocol):
    """What :func:`train_all` trains, as the engine builds it (``engines.train.Networks``)."""

    # pre-training of a fresh model, ``(model, x_train, y_train, seed) -> stats``; None: no pre-training
    pretrainer: Callable[[nn.Module, Tensor, Tensor, int], dict] | None

    def model(self, seed: int, d_in: int) -> nn.Module:
        """Replicate ``seed``'s freshly initialised model on the device, for inputs of ``d_in`` features."""

    def precision(self, d_in: int) -> Precision:
        """The precision plan of the run (depends on the model class and the device only)."""

    def probe_batch(self, x_train: Tensor, y_train: Tensor) -> tuple[Tensor, Tensor]:
        """The fixed probe batch drawn from a replicate's training set."""


def choose_lr(final_losses: list[float | None]) -> int:
    """Index of the lowest final training loss (nan/None count as +inf; the first on ties)."""
    def key(g: int) -> float:
        value = final_losses[g]
        return math.inf if value is None or math.isnan(value) else value
    return min(range(len(final_losses)), key=key)


def open_run(cfg: DictConfig, writer, device: torch.device, precision: Precision, seeds: list[int],
             optim: OptimSpec) -> tuple[dict | None, dict[str, dict]]:
    """Start or reopen a training run's directory: notes its precision and step unit, finds the checkpoint to
    continue from (:func:`_resume_state`; metrics.csv truncated to it) and brings ``spectra/`` in line with it
    (cleared when starting over, the files after the checkpoint pruned when resuming). Returns ``(state,
    notes)``: the checkpoint or None, and the run.json notes it carried (re-noted here)."""
    directory = getattr(writer, "directory", None)
    writer.note(precision=precision.describe(), step_unit="epoch" if optim.log_every is None else "iteration")
    state = _resume_state(writer, cfg, device, precision) if directory is not None else None
    if directory is not None and state is None:
        spectra.clear(directory)
    elif state is not None:  # the log points after the checkpoint are redone
        trainer_state = state["trainer"]
        done = trainer_state["epoch"] if optim.log_every is None else trainer_state["iteration"]
        spectra.prune(directory, seeds[state["replicate"]], done)
    notes: dict[str, dict] = {k: dict(v) for k, v in state["notes"].items()} if state is not None else {}
    if notes:
        writer.note(**notes)
    if "diverged_at" in notes:
        writer.note(diverged=True)
    return state, notes


def note_timing(writer, notes: dict, trainer: Trainer) -> None:
    """run.json ``timing = {seed: {epochs, seconds, measure_share}}``: the wall time of the replicate's training
    epochs (this process's share, when resumed; a stacked group's wall time for its runs) and the fraction of it
    spent in log-point measurements."""
    total, measured = trainer.seconds["train"], trainer.seconds["measure"]
    notes.setdefault("timing", {})[str(trainer.seed)] = {
        "epochs": trainer.epoch, "seconds": round(total, 3),
        "measure_share": round(measured / total, 4) if total > 0 else None}
    writer.note(timing=notes["timing"])


def note_modules(writer, notes: dict, model) -> None:
    """run.json ``modules = {"layers": [...], "weights": [...]}``: the module name behind each ``layer`` index of
    metrics.csv, for a model that names them (``model=custom``: :meth:`bnexp.nn.hooked.Hooked.module_names`, known
    once it has been probed); once per run (the first replicate's, carried by checkpoints in ``notes``)."""
    names = getattr(model, "module_names", None)
    if names is not None and "modules" not in notes and (found := names())["layers"]:
        notes["modules"] = found
        writer.note(modules=found)


def note_stop(writer, notes: dict, trainer: Trainer) -> None:
    """Record in run.json (and ``notes``, carried by checkpoints) where and why ``trainer``'s run ended early:
    ``diverged: true`` with ``diverged_at = {seed: step}``, or ``stopped_early = {seed: step}``."""
    if trainer.stop_reason == "early_stop":
        notes.setdefault("stopped_early", {})[str(trainer.seed)] = trainer.at_step
        writer.note(stopped_early=notes["stopped_early"])
    else:
        notes.setdefault("diverged_at", {})[str(trainer.seed)] = trainer.at_step
        writer.note(diverged=True, diverged_at=notes["diverged_at"])


def checkpoint_state(cfg: DictConfig, device: torch.device, precision: Precision, trainer: Trainer, writer,
                     notes: dict, *, replicate: int = 0, grid_index: int = 0, held: list | None = None,
                     finals: list | None = None, initial: dict | None = None) -> dict:
    """What ``checkpoint.pt`` holds: the run's key, device and precision (a checkpoint of another is ignored),
    the position (replicate, grid point), the grid's held rows and final losses, the run.json notes, the
    pre-trained initial state, the trainer's state, torch's global generator (read inside the replicate's
    ``forked_rng``) and the size of metrics.csv to truncate back to."""
    return {"key": run_key(cfg), "device": device.type, "precision": precision.describe(),
            "replicate": replicate, "grid_index": grid_index, "held": held if held is not None else [[]],
            "finals": finals if finals is not None else [None], "notes": notes, "initial": initial or {},
            "trainer": trainer.state_dict(), "rng": rng_state(device), "csv_bytes": writer.tell()}


def _resume_state(writer, cfg: DictConfig, device: torch.device, precision: Precision) -> dict | None:
    """The checkpoint to continue from (metrics.csv truncated to it), or None: start over (file cleared)."""
    path = checkpoint.path_in(writer.directory)
    if not getattr(writer, "resume", False):
        checkpoint.remove(path)  # a stale checkpoint of an earlier attempt (e.g. a forced rerun)
        return None
    state = checkpoint.load(path)
    why = None
    if state is None:
        why = "no readable checkpoint"
    elif state.get("key") != run_key(cfg):
        why = "checkpoint of another config"
    elif state.get("device") != device.type or state.get("precision") != precision.describe():
        why = f"checkpoint made on {state.get('device')} with {state.get('precision')}"
    else:
        try:
            writer.truncate(int(state["csv_bytes"]))
        except ValueError as err:
            why = str(err)
    if why is not None:
        writer.truncate(writer.header_bytes)
        checkpoint.remove(path)
        writer.note(resumed=f"no: {why}; started over")
        return None
    writer.note(resumed=f"from replicate {state['replicate']}, grid point {state['grid_index']}, "
                        f"epoch {state['trainer']['epoch']}")
    return state


def train_all(cfg: DictConfig, writer, networks: Networks, *, seeds: list[int], device: torch.device,
              dtype: torch.dtype, spec: ProbeSpec, optim: OptimSpec) -> None:
    """Train every replicate (and grid point) of ``cfg``, appending rows to ``writer`` (module docstring)."""
    runtime_cfg = cfg.get("runtime") or {}
    every = int(runtime_cfg.get("checkpoint_every", 1))
    keep = bool(runtime_cfg.get("keep_checkpoint", False))
    directory = getattr(writer, "directory", None)
    path = checkpoint.path_in(directory) if directory is not None else None
    grid, searching = optim.lrs, optim.lr_grid is not None
    batch, drop_last = int(cfg.data.batch_size), bool(cfg.data.get("drop_last", False))

    first = data.make_dataset(cfg.data, seeds[0], device, dtype)
    d_in, n_train = first[0][0].numel(), len(first[0])
    last_step = optim.epochs if optim.log_every is None else optim.epochs * optim.steps(n_train, batch, drop_last)
    precision = networks.precision(d_in)  # depends on the model class and device only
    state, notes = open_run(cfg, writer, device, precision, seeds, optim)

    for r, seed in enumerate(seeds):
        if state is not None and r < state["replicate"]:
            continue
        split = first if r == 0 else data.make_dataset(cfg.data, seed, device, dtype)
        first = None
        probe_xy = networks.probe_batch(split[0], split[1])
        resumed = state if state is not None and state["replicate"] == r else None
        held: list[list[Row]] = resumed["held"] if resumed else [[] for _ in grid]
        finals: list[float | None] = list(resumed["finals"]) if resumed else [None] * len(grid)
        # the replicate's pre-trained state, shared by its grid points (in the checkpoint: a resumed run does not
        # pre-train again)
        initial: dict[str, Tensor] = dict(resumed.get("initial") or {}) if resumed else {}
        for g in range(resumed["grid_index"] if resumed else 0, len(grid)):
            is_resumed = resumed is not None and g == resumed["grid_index"]
            model = networks.model(seed, d_in)
            prepare = networks.pretrainer
            if prepare is not None and not is_resumed:  # a resumed model comes from the checkpoint
                if not initial:
                    stats = pretrain_seeded(prepare, model, split[0], split[1], seed, device)
                    initial.update({k: v.detach().clone() for k, v in model.state_dict().items()})
                    notes.setdefault("pretrain", {})[str(seed)] = stats
                    writer.note(pretrain=notes["pretrain"])
                else:
                    model.load_state_dict(initial)
            trainer = Trainer(model, split, probe_xy, seed=seed, lr=grid[g], optim=optim, spec=spec,
                              batch_size=batch, drop_last=drop_last, precision=precision)
            if directory is not None:
                trainer.spectra_sink = lambda s, t, arrays: spectra.write_spectra(directory, s, t, arrays)

            def emit(rows: list[Row], g: int = g, held: list[list[Row]] = held) -> None:
                if searching:
                    held[g].extend(rows)
                else:
                    writer.append(rows)

            def on_epoch_end(t: Trainer, r: int = r, g: int = g, held: list[list[Row]] = held,
                             finals: list[float | None] = finals, initial: dict[str, Tensor] = initial) -> None:
                if path is None or not (t.epoch % every == 0 or t.epoch == optim.epochs):
                    return
                checkpoint.save(path, checkpoint_state(cfg, device, precision, t, writer, notes, replicate=r,
                                                       grid_index=g, held=held, finals=finals, initial=initial))

            with forked_rng(device, train_seed(seed)):
                if is_resumed:
                    trainer.load_state_dict(resumed["trainer"])
                    set_rng_state(resumed["rng"], device)
                else:
                    emit(trainer.initial_rows())
                desc = f"{cfg.exp_name} seed={seed}" + (f" lr={grid[g]:g}" if searching else "")
                with tqdm(total=trainer.total_steps, initial=trainer.iteration, desc=desc, unit="step",
                          disable=not runtime_cfg.get("progress", True), leave=False) as bar:
                    trainer.fit(emit, on_epoch_end, bar)
            finals[g] = trainer.last_train_loss
            note_modules(writer, notes, model)
            note_timing(writer, notes, trainer)
            if trainer.stopped and not searching:
                note_stop(writer, notes, trainer)
        state = None
        if searching:
            best = choose_lr(finals)
            extra = [(seed, 0, None, "lr", float(grid[best]))]
            for g, lr in enumerate(grid):
                loss = finals[g] if finals[g] is not None else math.nan
                extra += [(seed, last_step, g, "grid_lr", float(lr)), (seed, last_step, g, "grid_train_loss", loss)]
            writer.append(extra[:1] + held[best] + extra[1:])
            notes.setdefault("lr_search", {})[str(seed)] = {
                "grid": list(grid), "final_train_loss": finals, "chosen_lr": grid[best], "chosen_index": best}
            writer.note(lr_search=notes["lr_search"])
            edge = " (an end of the grid: widen it)" if best in (0, len(grid) - 1) and len(grid) > 2 else ""
            if runtime_cfg.get("progress", True):
                loss = "nan" if finals[best] is None else f"{finals[best]:.4g}"
                tqdm.write(f"[bnexp] {cfg.exp_name} seed={seed}: lr {grid[best]:g} of {list(grid)}, final train loss "
                           f"{loss}{edge}")
    if path is not None and not keep:
        checkpoint.remove(path)

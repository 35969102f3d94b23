"""Planning threads and lanes, the task scheduler, and the public entry points ``simulate``, ``states``, ``run``."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bnexp.chains.lane import SLOTS, Lane
from bnexp.chains.params import ChainParams, check_gammas, check_seeds
from bnexp.runtime import check_threads, resolve_device

_AUTO_MIN_NUMBERS = 1000  # auto threads: fewer weight numbers per layer (all replicates) than this → 1 thread
_FLUSH_LAYERS = 256  # run(): measured layers buffered before writer.append
_FLUSH_SECONDS = 30.0  # ... or this long, whichever comes first


@dataclass
class Plan:
    workers: int  # threads running tasks (the caller's thread included)
    lanes: int  # replicate groups stepped by separate bmm calls
    chunks: int  # replicate groups per lane drawing weights as separate tasks

    def describe(self) -> str:
        """The plan in words, for run.json."""
        return f"{self.workers} worker thread(s), {self.lanes} lane(s), {self.chunks} draw chunk(s), 1 BLAS thread"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_threads(p: ChainParams, replicates: int, device: torch.device, threads: int | str) -> Plan:
    """Threads, lanes and draw chunks for a run (module docstring; measured in docs/performance.md)."""
    if device.type != "cpu":
        return Plan(1, 1, 1)
    if threads == "auto":
        workers = _cores() if replicates * p.numbers_per_layer() >= _AUTO_MIN_NUMBERS else 1
    else:
        workers = int(threads)
    if workers == 1:
        return Plan(1, 1, 1)
    # per replicate and layer: matmul flops vs weight draws, at effective per-core costs with both cores busy
    # (≈ 40 GFLOP/s in float64, 80 in float32; ≈ 4.5 ns per normal drawn, cast and scattered): split lanes
    # only where the steps, not the draws, are the critical path
    flops = 2.0 * p.n * p.width * (p.width if p.sampler == "full_w" else min(p.n, p.width))
    if p.space == "M":
        flops *= 2
    step_s = flops / (80e9 if p.dtype == "float32" else 40e9)
    draw_s = p.numbers_per_layer() * 4.5e-9
    # never BLAS (intra-op) threads: on a quiet 2-core machine they beat overlapping draws and steps by ≤ 1.3× for one
    # float64 chain at d ≥ 256, but with one core busy elsewhere each matmul waits for the descheduled thread and
    # the run is 3–22× slower than one thread (docs/performance.md, "Threads"); worker threads degrade gracefully
    lanes = min(replicates, workers) if step_s > draw_s else 1
    return Plan(workers, lanes, workers)


# ------------------------------------------------------------------------------------------------- engine


class _Engine:
    """Task scheduler over lanes: ``draw`` and ``step`` tasks run by ``workers`` threads (see module doc)."""

    def __init__(self, p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device, plan: Plan):
        self.p, self.plan = p, plan
        self.layers = p.measured_layers()
        last_layer = self.layers[-1]
        bounds = np.linspace(0, len(seeds), plan.lanes + 1).astype(int)
        self.lanes = []
        for lo, hi in itertools.pairwise(bounds):
            lane = Lane(p, seeds[lo:hi], gammas[lo:hi], device, plan.chunks)
            lane.last_layer = last_layer  # nothing after the last measured layer is computed
            lane.last_block = (last_layer - 1) // lane.block if last_layer > 0 else -1
            self.lanes.append(lane)
        self.keys = self.lanes[0].keys()
        self.cond = threading.Condition()
        self.results: dict[int, list[Tensor | None]] = {}
        self.error: BaseException | None = None
        self.stop = False
        if p.measured(0):
            for i, lane in enumerate(self.lanes):
                self._store(0, i, lane.measure())

    # ---- bookkeeping (callers hold self.cond unless noted)

    def _store(self, layer: int, lane: int, values: Tensor) -> None:
        slots = self.results.setdefault(layer, [None] * len(self.lanes))
        slots[lane] = values

    def _done(self) -> bool:
        return all(lane.next_step > lane.last_block for lane in self.lanes)

    def _pick(self) -> tuple | None:
        """The next ready task: step the lane furthest behind, else draw the earliest missing block."""
        behind = None
        for lane in self.lanes:
            if not lane.stepping and lane.next_step <= lane.last_block and min(lane.drawn) > lane.next_step:
                if behind is None or lane.layer < behind.layer:
                    behind = lane
        if behind is not None:
            behind.stepping = True
            return ("step", behind, behind.next_step)
        best = None
        for lane in self.lanes:
            for c, block in enumerate(lane.drawn):
                if lane.busy[c] or block > lane.last_block or block >= lane.next_step + SLOTS:
                    continue
                if best is None or block < best[3]:
                    best = ("draw", lane, c, block)
        if best is not None:
            best[1].busy[best[2]] = True
        return best

    def _execute(self, task: tuple) -> None:
        """Run a task outside the lock, then record its completion (called without the lock held)."""
        if task[0] == "draw":
            _, lane, chunk, block = task
            lane.draw(chunk, block)
            with self.cond:
                lane.busy[chunk] = False
                lane.drawn[chunk] += 1
                self.cond.notify_all()
        else:
            _, lane, block = task
            index = self.lanes.index(lane)

            def on_measure(layer: int) -> None:
                values = lane.measure()
                with self.cond:
                    self._store(layer, index, values)
                    self.cond.notify_all()

            lane.step_block(block, on_measure)
            with self.cond:
                lane.stepping = False
                lane.next_step += 1
                self.cond.notify_all()

    def _worker(self) -> None:
        while True:
            with self.cond:
                task = None
                while not (self.stop or self.error or self._done()):
                    task = self._pick()
                    if task is not None:
                        break
                    self.cond.wait()
            if task is None:
                return
            try:
                self._execute(task)
            except BaseException as exc:  # handed to the caller's thread, which re-raises it
                with self.cond:
                    self.error = exc
                    self.cond.notify_all()
                return

    def __iter__(self) -> Iterator[tuple[int, Tensor]]:
        """Yield (layer, (K, R) float64 tensor on the device) for each measured layer, in order."""
        workers = [threading.Thread(target=self._worker, daemon=True, name=f"bnexp-chain-{i}")
                   for i in range(self.plan.workers - 1)]
        for w in workers:
            w.start()
        try:
            for layer in self.layers:
                while True:
                    with self.cond:
                        if self.error is not None:
                            raise self.error
                        got = self.results.get(layer)
                        if got is not None and all(v is not None for v in got):
                            del self.results[layer]
                            break
                        task = self._pick()
                        if task is None:
                            self.cond.wait()
                            continue
                    try:
                        self._execute(task)
                    except BaseException:
                        with self.cond:
                            self.stop = True
                            self.cond.notify_all()
                        raise
                yield layer, torch.cat(got, dim=1)
        finally:
            with self.cond:
                self.stop = True
                self.cond.notify_all()
            for w in workers:
                w.join()


# ------------------------------------------------------------------------------------------------- public API


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch intra-op threads for the duration of a run (restored afterwards)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def simulate(
    params: ChainParams,
    seeds: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    gammas: Sequence[float] | None = None,
    threads: int | str = "auto",
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Run R = len(seeds) chains and yield ``(layer, {metric: array (R,)})`` for every measured layer.

    Replicate r uses seed ``seeds[r]`` and γ = ``gammas[r]`` (default: ``params.gamma`` for all; inf allowed).
    Validates everything before any work and returns the iterator. Non-finite chains give inf/nan values
    and keep going. ``threads``: ``"auto"`` or the number of CPU threads to run on (module docstring). While
    the iterator runs on the CPU, torch's intra-op thread count is 1; it is restored when the iterator finishes or
    is closed.
    """
    params.validate()
    seeds = check_seeds(seeds)
    gammas = check_gammas([params.gamma] * len(seeds) if gammas is None else gammas, len(seeds))
    check_threads(threads)
    device = torch.device(device)
    plan = plan_threads(params, len(seeds), device, threads)
    return _iterate(params, seeds, gammas, device, plan, progress)


def _iterate(p: ChainParams, seeds: list[int], gammas: list[float], device: torch.device, plan: Plan,
             progress: bool) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    from tqdm.auto import tqdm

    with _torch_threads(1 if device.type == "cpu" else torch.get_num_threads()):
        engine = _Engine(p, seeds, gammas, device, plan)
        with tqdm(total=engine.layers[-1], unit="layer", disable=not progress, desc="chain") as bar:
            for layer, values in engine:
                host = values.cpu().numpy()  # the one host transfer per measured layer
                bar.update(layer - bar.n)
                yield layer, dict(zip(engine.keys, host))


def states(params: ChainParams, seeds: Sequence[int], *, gammas: Sequence[float] | None = None,
           device: str | torch.device = "cpu") -> Iterator[tuple[int, Tensor]]:
    """Yield ``(layer, state)`` for ℓ = 0..depth with the engine's own stepping code, serially.

    state is a copy of H_ℓ (R, N, d) (or M_ℓ (R, d, d) for space=M) in the chain dtype. For tests and
    inspection of short chains; ``simulate`` is the streamed, measured, multi-threaded path.
    """
    params.validate()
    seeds = check_seeds(seeds)
    gammas = check_gammas([params.gamma] * len(seeds) if gammas is None else gammas, len(seeds))
    lane = Lane(params, seeds, gammas, torch.device(device), chunks=1)
    yield 0, lane.state.clone()
    for layer in range(1, params.depth + 1):
        block, j = divmod(layer - 1, lane.block)
        if j == 0:
            lane.draw(0, block)
        lane._step(lane.views[block % SLOTS][j])
        yield layer, lane.state.clone()


def run(cfg: Any, writer: Any) -> None:
    """``bnexp simulate``: run cfg.chain for seeds seed..seed+n_seeds−1 and append rows to ``writer``.

    Rows are ``(seed, step=layer ℓ, layer=None, metric, value)``, appended every few hundred measured layers
    (or 30 s), so a run that dies leaves a readable prefix.
    """
    params = ChainParams.from_cfg(cfg["chain"]).validate()
    seeds = [int(cfg["seed"]) + r for r in range(int(cfg["n_seeds"]))]
    runtime = cfg.get("runtime") or {}
    threads = runtime.get("threads", "auto")
    device = resolve_device(runtime.get("device", "auto"), prefer_cuda=False)
    rows: list[tuple[int, int, None, str, float]] = []
    buffered, last_flush = 0, time.monotonic()
    check_threads(threads)
    plan = plan_threads(params, len(seeds), device, threads)
    if hasattr(writer, "note"):
        writer.note(threads=str(threads), thread_plan=plan.describe() if device.type == "cpu" else "device")
    chain = simulate(params, seeds, device=device, progress=bool(runtime.get("progress", False)), threads=threads)
    for layer, values in chain:
        for name, arr in values.items():
            rows.extend((seed, layer, None, name, float(v)) for seed, v in zip(seeds, arr))
        buffered += 1
        if buffered >= _FLUSH_LAYERS or time.monotonic() - last_flush > _FLUSH_SECONDS:
            writer.append(rows)
            rows, buffered, last_flush = [], 0, time.monotonic()
    if rows:
        writer.append(rows)

"""The engines' thread plans side by side, on a quiet machine and next to a competing process.

The work (--engine): ``chain``: rank/fig8's chain (configs/exp/rank_regularity.yaml: BN linear chain, N = d, one
seed, the regularity terms every 10th layer) at d ∈ --widths, --layers layers each; ``train``: one epoch of the
network engine (``bnexp train``, through ``engines.train.run``) on an MLP of 10 hidden layers of width d ∈ --widths
(Linear → BN → tanh, CIFAR-sized Gaussian inputs d_in = 3072, B = 100, --steps SGD steps, float32, no probe
metrics), the data and model built in the timed call as a run builds them. Plans: ``runtime.threads`` = ``auto``
(the engine's choice, recorded in run.json) and 1, 2 (every core on this machine) given explicitly. Conditions:
``quiet`` (nothing else started by this script) and ``busy`` (one process spinning on one core for the whole
measurement, as a second job or a browser would). Each cell is the median of --repeats interleaved runs; the table
gives seconds and the ratio to the best plan of its row. Results: docs/performance.md ("Threads").

    python scripts/bench_threads.py                       # d = 64, 128, 256; a few minutes on 2 cores
    python scripts/bench_threads.py --widths 256 --layers 1500
    python scripts/bench_threads.py --engine train --widths 128,256,512,1024
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import torch

from bnexp import config, results
from bnexp.chains import ChainParams, simulate
from bnexp.chains.engine import plan_threads
from bnexp.engines import train

SPIN = "while True: pass"


@contextmanager
def competing(active: bool):
    """One process spinning on one core while the block runs (nothing when not ``active``)."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN]) if active else None
    try:
        if proc is not None:
            time.sleep(0.5)  # let it reach the scheduler
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def chain(width: int, layers: int) -> ChainParams:
    return ChainParams(width=width, depth=layers, norm="bn_theory", act="linear", input="orthogonal", burn_in=0,
                       measure_every=10, metrics=("regularity_terms", "second_moment_fro2")).validate()


def seconds(p: ChainParams, threads: int | str) -> float:
    start = time.perf_counter()
    for _ in simulate(p, [0], threads=threads):
        pass
    return time.perf_counter() - start


def train_config(width: int, steps: int, threads: int | str):
    return config.compose("train", [
        "model=mlp", "model.depth=10", f"model.width={width}", "act=tanh", "data=gaussian", "data.dim=3072",
        f"data.n_train={100 * steps}", "data.n_test=100", "data.batch_size=100", "optim.epochs=1", "probe.metrics=[]",
        "probe.grad_norms=false", "dtype=float32", f"runtime.threads={threads}", "runtime.progress=false"])


def train_seconds(width: int, steps: int, threads: int | str) -> float:
    cfg = train_config(width, steps, threads)
    start = time.perf_counter()
    train.run(cfg, results.MemoryWriter())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("chain", "train"), default="chain")
    parser.add_argument("--widths", default=None, help="default: 64,128,256 (chain), 128,256,512,1024 (train)")
    parser.add_argument("--steps", type=int, default=20, help="train: SGD steps per timed run")
    parser.add_argument("--layers", type=int, default=0, help="layers per chain (0: per width, ~2-5 s at 2 threads)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plans", default="auto,1,2")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    plans: list[int | str] = [p if p == "auto" else int(p) for p in args.plans.split(",")]
    widths = [int(w) for w in (args.widths or ("64,128,256" if args.engine == "chain" else "128,256,512,1024"))
              .split(",")]
    work = ("chain: rank_regularity (BN linear, N = d, 1 seed)" if args.engine == "chain" else
            f"train: MLP 3072 → d × 10 → 10, B = 100, {args.steps} SGD steps")
    print(f"{cores} cores; {work}; median of {args.repeats}")
    size = "layers" if args.engine == "chain" else "steps"
    print(f"{'condition':>9} {'d':>5} {size:>7}  " + "  ".join(f"{p!s:>13}" for p in plans) + "  auto plan")
    for condition in ("quiet", "busy"):
        for width in widths:
            if args.engine == "chain":
                count = args.layers or {64: 6000, 128: 3000, 256: 1500}.get(width, 1500)
                p = chain(width, count)
                run = lambda plan, p=p: seconds(p, plan)  # noqa: E731
                auto = plan_threads(p, 1, torch.device("cpu"), "auto").describe()
            else:
                count = args.steps
                run = lambda plan, width=width, count=count: train_seconds(width, count, plan)  # noqa: E731
                auto = f"{train.choose_threads('auto', width)} thread(s)"
            times: dict[int | str, list[float]] = {plan: [] for plan in plans}
            with competing(condition == "busy"):
                run(plans[0])  # warm-up, not counted (first calls, allocator)
                for _ in range(args.repeats):  # interleaved: a drift in the machine's load hits every plan alike
                    for plan in plans:
                        times[plan].append(run(plan))
            med = {plan: statistics.median(t) for plan, t in times.items()}
            best = min(med.values())
            cells = "  ".join(f"{med[plan]:6.2f}s {med[plan] / best:4.2f}×" for plan in plans)
            print(f"{condition:>9} {width:>5} {count:>7}  {cells}  {auto}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark bnexp's init-time probe (all seeds in vmapped passes) against a plain loop over seeds.

The work per (width d, depth L): the depth paper's init-time gradient experiment (depth/fig3) for --seeds seeds:
an MLP d_in → d, L hidden layers Linear → BN (bn_theory: √n·h/‖h‖, no centring) → identity, readout to 10
classes, no biases, orthogonal (or --init) weights, float64; one forward of a fixed probe batch of n = d
Gaussian samples (d_in = 3072 for d ≥ 100 as CIFAR-10, else 64) in train mode, one backward of the mean
cross-entropy, ‖∂loss/∂W_k‖_F for every weight layer k.

* **plain**: for each seed, ``train.make_model`` (the seed's weights), forward, backward, the norms — on one
  torch thread, its best setting here (100×100 QRs on two BLAS threads are many times slower);
* **loop**: ``bnexp train`` with ``runtime.batch_seeds=false`` (the per-seed path);
* **bnexp**: ``bnexp train`` with ``runtime.batch_seeds=true`` (threads auto): seeds in vmapped passes, the
  next pass's weights built on the other core meanwhile.

Also printed: the weight construction of the seeds alone (``make_model`` one after another, and as the
batched path builds them: ``stacked.StackBuilder``, inits on one worker thread per core); with --sweep the
paper-scale depth sweep of one configuration (depths 5 … 1000, d = n = 100, d_in = 3072); with --threads the
batched path on 1 and 2 torch threads. Timings are the best of --repeats interleaved runs (the machine may be shared).
Results: docs/performance.md.

    python scripts/bench_probe.py                             # d = 100 and 32, L = 100 and 1000
    python scripts/bench_probe.py --widths 100 --depths 1000 --threads
    python scripts/bench_probe.py --sweep --skip bench        # the paper-scale depth sweep only
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from bnexp import config, data, results
from bnexp.engines import train
from bnexp.probe import stacked
from bnexp.runtime import DTYPES

DEFAULT_THREADS = torch.get_num_threads()
PAPER_DEPTHS = (5, 10, 20, 50, 100, 200, 500, 1000)


def overrides(d: int, depth: int, seeds: int, init: str, dtype: str) -> list[str]:
    d_in = 3072 if d >= 100 else 64
    return [f"model.depth={depth}", f"model.width={d}", "model.bias=false", "norm=bn_theory", "act=linear",
            f"init={init}", "data=gaussian", f"data.dim={d_in}", f"data.n_train={d}", "data.n_test=1",
            f"data.batch_size={d}", "data.seed=0", f"n_seeds={seeds}", f"dtype={dtype}", "optim.epochs=0",
            "probe.metrics=[]", "probe.layers=last", "probe.grad_norms=true", "runtime.progress=false"]


def plain(cfg) -> list[list[float]]:
    """The obvious loop: per seed build the model, forward, backward, gradient norms (one torch thread)."""
    dtype = DTYPES[cfg.dtype]
    x_train, y_train, *_ = data.make_dataset(cfg.data, cfg.seed, "cpu", dtype)
    x, y = x_train[: cfg.data.batch_size], y_train[: cfg.data.batch_size]
    out = []
    for r in range(cfg.n_seeds):
        model = train.make_model(cfg, x.shape[1], cfg.data.n_classes, cfg.seed + r, "cpu", dtype).train()
        weights = [m.weight for m in model.weight_layers()]
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
        out.append([g.to(torch.float64).norm().item() for g in grads])
    return out


def bnexp_run(cfg) -> results.MemoryWriter:
    writer = results.MemoryWriter()
    train.run(cfg, writer)
    return writer


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def with_threads(threads: int, fn, *args):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(previous)


def init_serial(cfg) -> None:
    """The seeds' models one after another, ``make_model`` as the loop builds them (one torch thread)."""
    d_in = 3072 if cfg.model.width >= 100 else 64
    for r in range(cfg.n_seeds):
        with_threads(1, train.make_model, cfg, d_in, int(cfg.data.n_classes), cfg.seed + r, "cpu", DTYPES[cfg.dtype])


def init_bnexp(cfg) -> None:
    """The same weights as bnexp's batched path builds them: ``stacked.StackBuilder`` (one construction when
    construction draws do not survive init), inits on one worker thread per core, one torch thread."""
    seeds = [cfg.seed + r for r in range(cfg.n_seeds)]
    d_in, dtype = (3072 if cfg.model.width >= 100 else 64), DTYPES[cfg.dtype]

    def build():
        with ThreadPoolExecutor(DEFAULT_THREADS) as pool:
            builder = stacked.StackBuilder(lambda s: train._construct(cfg, d_in, 10, s, dtype),
                                           lambda m, s: train._initialise(cfg, m, s), seeds, pool, DEFAULT_THREADS)
            builder.build(seeds, "cpu")

    with_threads(1, build)


def check_same(plain_norms: list[list[float]], writer: results.MemoryWriter) -> float:
    """Largest relative difference between the two ways' gradient norms (they must agree)."""
    worst = 0.0
    for seed, _, layer, metric, value in writer.rows:
        if metric == "grad_norm":
            ref = plain_norms[seed][layer]
            worst = max(worst, abs(value - ref) / abs(ref))
    return worst


def bench(args) -> None:
    print(f"\n## plain loop vs bnexp (seconds for {args.seeds} seeds, init {args.init}, {args.dtype}; "
          f"best of {args.repeats})\n")
    print("| d | L | init serial | init bnexp | plain | bnexp loop | bnexp batched | plain / batched "
          "| loop / batched |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for d in args.widths:
        for depth in args.depths:
            cfg = config.compose("train", overrides(d, depth, args.seeds, args.init, args.dtype))
            loop_cfg = config.compose("train", [*overrides(d, depth, args.seeds, args.init, args.dtype),
                                                "runtime.batch_seeds=false"])
            fast_cfg = config.compose("train", [*overrides(d, depth, args.seeds, args.init, args.dtype),
                                                "runtime.batch_seeds=true"])
            best = {k: float("inf") for k in ("init1", "initw", "plain", "loop", "fast")}
            for _ in range(args.repeats):
                best["init1"] = min(best["init1"], timed(init_serial, cfg)[0])
                best["initw"] = min(best["initw"], timed(init_bnexp, cfg)[0])
                t, norms = timed(with_threads, 1, plain, cfg)
                best["plain"] = min(best["plain"], t)
                best["loop"] = min(best["loop"], timed(bnexp_run, loop_cfg)[0])
                t, writer = timed(bnexp_run, fast_cfg)
                best["fast"] = min(best["fast"], t)
            worst = check_same(norms, writer)
            assert worst < 1e-10, f"batched and plain gradient norms differ: {worst:.2e}"
            print(f"| {d} | {depth} | {best['init1']:.2f} | {best['initw']:.2f} | {best['plain']:.2f} | "
                  f"{best['loop']:.2f} | {best['fast']:.2f} | **{best['plain'] / best['fast']:.2f}×** | "
                  f"{best['loop'] / best['fast']:.2f}× |", flush=True)


def threads(args) -> None:
    print(f"\n## batched path: torch threads (seconds, {args.seeds} seeds; best of {args.repeats})\n")
    print("| d | L | threads=1 (no init workers) | threads=2 | auto (1 + init on the other core) |")
    print("|---:|---:|---:|---:|---:|")
    for d in args.widths:
        for depth in args.depths:
            base = [*overrides(d, depth, args.seeds, args.init, args.dtype), "runtime.batch_seeds=true"]
            cfgs = {k: config.compose("train", [*base, f"runtime.threads={k}"]) for k in ("1", "2", "auto")}
            best = dict.fromkeys(cfgs, float("inf"))
            for _ in range(args.repeats):
                for k, cfg in cfgs.items():
                    best[k] = min(best[k], timed(bnexp_run, cfg)[0])
            print(f"| {d} | {depth} | {best['1']:.2f} | {best['2']:.2f} | {best['auto']:.2f} |", flush=True)


def sweep(args) -> None:
    print(f"\n## paper-scale depth sweep, one configuration (depths {', '.join(map(str, PAPER_DEPTHS))}; "
          f"{args.seeds} seeds; d = n = 100, d_in = 3072; {args.dtype})\n")
    print("| init | bnexp loop (s) | bnexp batched (s) | ratio |")
    print("|---|---:|---:|---:|")
    for init in args.sweep_inits:
        totals = {}
        for mode in ("false", "true"):
            start = time.perf_counter()
            for depth in PAPER_DEPTHS:
                bnexp_run(config.compose("train", [*overrides(100, depth, args.seeds, init, args.dtype),
                                                   f"runtime.batch_seeds={mode}"]))
            totals[mode] = time.perf_counter() - start
        print(f"| {init} | {totals['false']:.1f} | {totals['true']:.1f} | {totals['false'] / totals['true']:.2f}× |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", default="100,32", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--depths", default="100,1000", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--seeds", default=10, type=int)
    parser.add_argument("--init", default="orthogonal")
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--repeats", default=3, type=int)
    parser.add_argument("--threads", action="store_true", help="also the batched path on 1 vs 2 torch threads")
    parser.add_argument("--sweep", action="store_true", help="also the paper-scale depth sweep (one run each way)")
    parser.add_argument("--sweep-inits", default="orthogonal,xavier_normal", type=lambda s: s.split(","))
    parser.add_argument("--skip", default="", type=lambda s: set(filter(None, s.split(","))),
                        help="comma list of sections to skip: bench")
    args = parser.parse_args()
    print(f"# bench_probe: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
          f"{torch.__version__} ({DEFAULT_THREADS} default threads)")
    if "bench" not in args.skip:
        bench(args)
    if args.threads:
        threads(args)
    if args.sweep:
        sweep(args)


if __name__ == "__main__":
    main()

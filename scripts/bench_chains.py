"""Benchmark bnexp's chain engine against a plain per-layer loop on the same work (rank/fig3a chains).

The work per width d: the BN linear residual chain H ← BN(H + γ W H) (theory BN, N = d, M_0 = I, Gaussian W)
for every γ in --gammas and every seed in --seeds, --layers layers each, rank_{1/2} measured at the last
layer. (a) is the obvious loop, one chain at a time, torch default threads, in float64 (as the papers' numpy
code) and in the chain dtype; (b) is ``bnexp.chains.simulate`` with all chains batched (``gammas=``). Rates
are chain-layers per second.

Also printed: the machine's d×d×d matmul rate at d = 256 (chain dtype, default threads) against bnexp's
useful matmul rate at d = 256; the Gram sampler's speed-up for N ≪ d, and on the ortho/fig2b workload (section
``ortho``: N = 4, d = 16…512, 20 seeds, full_w vs gram side by side); the threads rule (1 vs all cores);
and an estimate of the paper-scale rank/fig3a run (3 γ × 6 widths × 10^6 layers). Timings are the best of
--repeats interleaved runs (the machine may be shared). Results: docs/performance.md.

    python scripts/bench_chains.py                      # everything, a few minutes on 2 cores
    python scripts/bench_chains.py --widths 8,64 --layers 500 --dtype float64
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import time

import torch

from bnexp import metrics
from bnexp.chains import ChainParams, simulate
from bnexp.chains.engine import plan_threads

DEFAULT_THREADS = torch.get_num_threads()
AUTO_LAYERS = {8: 3000, 16: 3000, 32: 2000, 64: 400, 128: 150, 256: 60}  # for 30 chains: ~1–3 s per width


def reference(d: int, gamma: float, seed: int, layers: int, every: int, dtype: torch.dtype) -> list[float]:
    """The straightforward loop: one chain, paper orientation H (d, N = d), one fresh W per layer."""
    gen = torch.Generator().manual_seed(seed)
    h = math.sqrt(d) * torch.eye(d, dtype=dtype)  # M_0 = I
    ranks = [metrics.soft_rank(h.T).item()]
    for layer in range(1, layers + 1):
        w = torch.randn(d, d, generator=gen, dtype=dtype)
        h = w @ h if math.isinf(gamma) else h + gamma * (w @ h)
        h = h / torch.sqrt((h * h).mean(dim=1, keepdim=True))  # BN: each feature (row) to mean square 1
        if layer % every == 0:
            ranks.append(metrics.soft_rank(h.T).item())
    return ranks


def engine(d: int, gammas: list[float], seeds: list[int], layers: int, every: int, dtype: str,
           threads: int | str = "auto", **extra) -> list[float]:
    extra = {"input": "orthogonal", **extra}
    params = ChainParams(width=d, depth=layers, measure_every=every, metrics=("soft_rank",), dtype=dtype, **extra)
    chains = [(g, s) for g in gammas for s in seeds]
    out = [v["soft_rank"].mean() for _, v in simulate(params, [s for _, s in chains],
                                                      gammas=[g for g, _ in chains], threads=threads)]
    return out


def best_of(repeats: int, fn) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(d: int, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of a d×d×d matmul with torch's default threads (best of repeats × 20 products)."""
    torch.set_num_threads(DEFAULT_THREADS)
    a, b = torch.randn(d, d, dtype=dtype), torch.randn(d, d, dtype=dtype)
    out = torch.empty(d, d, dtype=dtype)
    torch.mm(a, b, out=out)
    seconds = best_of(repeats + 2, lambda: [torch.mm(a, b, out=out) for _ in range(20)]) / 20
    return 2 * d**3 / seconds / 1e9


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {cores} cores, torch {torch.__version__} ({DEFAULT_THREADS} default threads), "
            f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="8,16,32,64,128,256")
    ap.add_argument("--layers", default="auto", help="layers per chain; auto: per width, ~1–3 s of work")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--gammas", default="0.01,1,inf")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", default="auto", help="bnexp threads: auto or an integer")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: compare,gram,ortho,threads,estimate")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    gammas = [float(g) for g in args.gammas.split(",")]
    seeds = list(range(args.seeds))
    threads = args.threads if args.threads == "auto" else int(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    tdtype = getattr(torch, args.dtype)
    n_chains = len(gammas) * len(seeds)
    print(f"# machine: {machine()}")
    print(f"# work per width: {len(gammas)} γ {gammas} × {len(seeds)} seeds = {n_chains} chains, N = d, "
          f"dtype {args.dtype}, bnexp threads={args.threads}")

    rates: dict[int, float] = {}
    if "compare" not in skip:
        # the plain loop in float64 (numpy-style, as the papers' code) and in the chain dtype; bnexp in the chain
        # dtype. One measurement at the last layer, like the sparse sampling of fig3a (every 10^3–10^4 layers).
        plain_dtypes = sorted({"float64", args.dtype})
        head = " | ".join(f"plain {dt}" for dt in plain_dtypes)
        print(f"\n| d | layers | {head} | bnexp {args.dtype} | " +
              " | ".join(f"bnexp / plain {dt}" for dt in plain_dtypes) + " |")
        print("|---:|---:|" + "---:|" * (2 * len(plain_dtypes) + 1))
        for d in widths:
            layers = int(args.layers) if args.layers != "auto" else max(
                20, AUTO_LAYERS.get(d, 2**22 // d**2) * 30 // n_chains)

            def plain(dt, d=d, layers=layers):
                torch.set_num_threads(DEFAULT_THREADS)
                for g in gammas:
                    for s in seeds:
                        reference(d, g, s, layers, layers, getattr(torch, dt))

            def ours(d=d, layers=layers):
                engine(d, gammas, seeds, layers, layers, args.dtype, threads, burn_in=layers)

            engine(d, gammas[:1], seeds[:1], 2, 1, args.dtype, threads)  # warm-up
            t_plain = dict.fromkeys(plain_dtypes, math.inf)
            t_ours = math.inf
            for _ in range(args.repeats):  # interleaved, best of
                for dt in plain_dtypes:
                    t_plain[dt] = min(t_plain[dt], best_of(1, lambda dt=dt: plain(dt)))
                t_ours = min(t_ours, best_of(1, ours))
            work = n_chains * layers
            rates[d] = work / t_ours
            cells = " | ".join(f"{work / t_plain[dt]:,.0f}" for dt in plain_dtypes)
            ratios = " | ".join(f"{t_plain[dt] / t_ours:.1f}×" for dt in plain_dtypes)
            print(f"| {d} | {layers} | {cells} | {work / t_ours:,.0f} | {ratios} |", flush=True)

        if 256 in rates:
            peak = matmul_rate(256, tdtype, args.repeats)
            useful = 2 * 256**3 * rates[256] / 1e9
            print(f"\nd = 256 matmul, {args.dtype}, {DEFAULT_THREADS} threads: machine {peak:.1f} GFLOP/s; "
                  f"bnexp useful matmul rate {useful:.1f} GFLOP/s; machine / bnexp = {peak / useful:.2f}×")

    if "gram" not in skip:
        d, n, layers = 512, 8, 200
        print(f"\nGram sampler, d = {d}, N = {n}, BN linear γ = ∞, {len(seeds)} seeds, {layers} layers, {args.dtype}:")
        t = {}
        for sampler in ("full_w", "gram"):
            t[sampler] = best_of(args.repeats, lambda s=sampler: engine(
                d, [math.inf], seeds, layers, layers, args.dtype, threads, batch=n, sampler=s, input="gaussian"))
            print(f"  {sampler:7s} {len(seeds) * layers / t[sampler]:10,.0f} chain-layers/s")
        print(f"  speed-up {t['full_w'] / t['gram']:.1f}×")

    if "ortho" not in skip:
        # ortho/fig2b: linear BN chain, N = 4, spiked input, 20 seeds, float64, V at every layer (the figure's
        # work: measuring is part of it); layers fewer than the figure's 500 for full_w at large d
        print("\northo/fig2b workload (BN linear γ = ∞, N = 4, 20 seeds, float64, V every layer), chain-layers/s:")
        print("| d | layers | full_w | gram | gram / full_w |")
        print("|---:|---:|---:|---:|---:|")
        for d in (16, 32, 64, 128, 256, 512):
            layers = 500 if d <= 128 else 100
            rate = {}
            for sampler in ("full_w", "gram"):
                params = ChainParams(width=d, batch=4, depth=layers, input="spiked", input_noise=1e-6,
                                     norm_input=False, bn_scale="unit_norm", sampler=sampler,
                                     metrics=("orthogonality_gap",))
                secs = best_of(args.repeats, lambda p=params: list(simulate(p, list(range(20)), threads=threads)))
                rate[sampler] = 20 * layers / secs
            print(f"| {d} | {layers} | {rate['full_w']:,.0f} | {rate['gram']:,.0f} | "
                  f"{rate['gram'] / rate['full_w']:.1f}× |", flush=True)

    if "threads" not in skip:
        print(f"\nthreads rule ({args.dtype}, chain-layers/s; the last column is what threads=auto picks):")
        print("| d | chains | 1 thread | all cores | auto plan |")
        print("|---:|---:|---:|---:|---|")
        for d in widths:
            for chains in (1, n_chains):
                layers = max(20, AUTO_LAYERS.get(d, 2**22 // d**2) * 10 // chains)  # ~0.3–1 s per run
                gs = (gammas * chains)[:chains]
                ss = list(range(chains))
                res = []
                for th in (1, os.cpu_count()):
                    secs = best_of(args.repeats, lambda th=th, gs=gs, ss=ss, layers=layers, d=d: list(simulate(
                        ChainParams(width=d, depth=layers, input="orthogonal", burn_in=layers, measure_every=layers,
                                    metrics=("soft_rank",), dtype=args.dtype), ss, gammas=gs, threads=th)))
                    res.append(chains * layers / secs)
                plan = plan_threads(ChainParams(width=d, dtype=args.dtype), chains, torch.device("cpu"), "auto")
                print(f"| {d} | {chains} | {res[0]:,.0f} | {res[1]:,.0f} | {plan.workers} workers, "
                      f"{plan.lanes} lanes |", flush=True)

    if "estimate" not in skip:
        # rank/fig3a at paper scale: per width 3 γ × 10^6 layers, rank_{1/2} and r every 1000 layers (exp config)
        print(f"\nestimate, paper-scale rank/fig3a ({args.dtype}; 3 γ × 10^6 layers per width, measured every 1000):")
        print("| d | as configured: 3 runs × 1 chain | γ batched: 1 run × 3 chains |")
        print("|---:|---:|---:|")
        total = [0.0, 0.0]
        for d in widths:
            layers = max(20, AUTO_LAYERS.get(d, 2**22 // d**2) * 2)
            row = []
            for i, chains in enumerate(([1.0], [0.01, 1.0, math.inf])):
                h = torch.randn(len(chains), d, d, dtype=getattr(torch, args.dtype))
                t_measure = best_of(args.repeats, lambda h=h: metrics.measure(h, ("soft_rank", "rank_lower_bound")))
                secs = best_of(args.repeats, lambda d=d, chains=chains, layers=layers: engine(
                    d, chains, [0], layers, layers, args.dtype, threads, burn_in=layers))
                per_layer = secs / layers  # seconds per layer of len(chains) chains
                runs = 3 // len(chains)
                est = runs * (1e6 * per_layer + 1000 * t_measure)
                total[i] += est
                row.append(est)
            print(f"| {d} | {row[0] / 60:.1f} min | {row[1] / 60:.1f} min |", flush=True)
        print(f"| total | {total[0] / 60:.0f} min | {total[1] / 60:.0f} min |")
    print(f"\n# load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

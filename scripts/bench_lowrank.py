"""Benchmark replicate-stacked SGD (``bnexp.training.stacked``) against a plain PyTorch loop over the replicates.

The work: R replicates of MLP-BN-L-H (``bnexp.nn.MLP``: L hidden layers Linear → BatchNorm1d → ReLU, readout to
10 classes, biases, PyTorch's default init) on d_in = 784 inputs (2000 Gaussian samples, 10 classes), SGD with
momentum 0.9 and weight decay 5e-4, each replicate with its own learning rate and its own epoch-wise shuffled
minibatches of B samples, float32, on --threads torch threads.

* **loop**: each replicate its own ``nn.Module`` and ``torch.optim.SGD``; per step, for every replicate: gather
  its minibatch, forward, cross-entropy, ``zero_grad``, backward, ``step``;
* **vmap**: the replicates stacked (``torch.func.stack_module_state``), forward under
  ``vmap(functional_call)``, one backward of the summed losses, SGD on the stacked tensors (a reference point:
  the alternative the stacked core was measured against);
* **stacked**: ``StackedSGD.step`` (batched matmuls, one flat parameter tensor) fed by ``StackedBatches``.

Rates are replicate-steps per second (R × steps / seconds), the best of --repeats interleaved runs (the machine
is shared); the ratio is stacked / loop. Results: docs/performance.md.

    python scripts/bench_lowrank.py                               # = make bench-lowrank
    python scripts/bench_lowrank.py --batches 8 --threads 1 --variants loop,stacked --repeats 5
    python scripts/bench_lowrank.py --device cuda --threads 1      # on a GPU
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from bnexp.nn.mlp import MLP
from bnexp.training.optim import epoch_batches
from bnexp.training.stacked import StackedBatches, StackedSGD

N, D_IN, K = 2000, 784, 10
MOMENTUM, WD = 0.9, 5e-4


DEVICE = torch.device("cpu")  # --device


def setup(R: int, depth: int, width: int, seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(N, D_IN).to(DEVICE)
    y = torch.randint(0, K, (N,)).to(DEVICE)
    models = [MLP(D_IN, width, depth, K, norm="bn_torch", act="relu").to(DEVICE) for _ in range(R)]
    lrs = [0.01 * (1 + r % 4) for r in range(R)]
    return x, y, models, lrs


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def generators(R: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + r) for r in range(R)]


def run_loop(x, y, models, lrs, B: int, steps: int) -> float:
    opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WD) for m, lr in zip(models, lrs)]
    gens = generators(len(models))
    streams = [iter(()) for _ in models]
    start = time.perf_counter()
    for _ in range(steps):
        for r, (model, opt) in enumerate(zip(models, opts)):
            idx = next(streams[r], None)
            if idx is None:
                streams[r] = iter(epoch_batches(N, B, gens[r], DEVICE, "shuffle", 0))
                idx = next(streams[r])
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync()
    return time.perf_counter() - start


def run_vmap(x, y, models, lrs, B: int, steps: int) -> float:
    params, buffers = stack_module_state(models)
    names, tensors = list(params), list(params.values())
    base = models[0]
    lr = torch.tensor(lrs, device=DEVICE).view(-1, 1)
    moms = [torch.zeros_like(t) for t in tensors]

    def loss_of(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    losses_of = vmap(loss_of)
    batches = StackedBatches(N, B, generators(len(models)), DEVICE)
    stream = iter(())
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        idx = next(stream, None)
        if idx is None:
            stream = iter(batches.epoch())
            idx = next(stream)
        losses = losses_of(dict(zip(names, tensors)), buffers, x[idx], y[idx])
        grads = torch.autograd.grad(losses.sum(), tensors)
        with torch.no_grad():
            for p, g, m in zip(tensors, grads, moms):
                g.add_(p, alpha=WD)
                torch.add(g, m, alpha=MOMENTUM, out=m)
                p.addcmul_(m, lr.view(-1, *([1] * (p.dim() - 1))), value=-1.0)
    _sync()
    return time.perf_counter() - start


def run_stacked(x, y, models, lrs, B: int, steps: int) -> float:
    sgd = StackedSGD(models, x, y, lrs=lrs, weight_decays=[WD] * len(models), momentum=MOMENTUM)
    batches = StackedBatches(N, B, generators(len(models)), DEVICE)
    stream = iter(())
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        idx = next(stream, None)
        if idx is None:
            stream = iter(batches.epoch())
            idx = next(stream)
        sgd.step(idx)
    _sync()
    return time.perf_counter() - start


VARIANTS = {"loop": run_loop, "vmap": run_vmap, "stacked": run_stacked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=12)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batches", default="8,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default="loop,vmap,stacked")
    ap.add_argument("--seconds", type=float, default=2.0, help="rough time per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (--threads then sets the host's threads)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    variants = args.variants.split(",")
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {where}, torch {torch.__version__}, "
          f"MLP-BN-{args.depth}-{args.width}, d_in {D_IN}, R = {args.replicates}, float32; "
          "replicate-steps/s, best of", args.repeats)
    print(f"{'threads':>7} {'B':>5} " + " ".join(f"{v:>9}" for v in variants) + "  stacked/loop")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for B in (int(b) for b in args.batches.split(",")):
            x, y, models, lrs = setup(args.replicates, args.depth, args.width)
            # calibrate: steps so that the loop takes about --seconds
            probe = run_loop(x, y, models, lrs, B, 3) / 3
            steps = max(5, int(args.seconds / max(probe, 1e-6)))
            best = {v: 0.0 for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    _, _, fresh, _ = setup(args.replicates, args.depth, args.width)
                    VARIANTS[v](x, y, fresh, lrs, B, 2)  # warm-up
                    rate = args.replicates * steps / VARIANTS[v](x, y, fresh, lrs, B, steps)
                    best[v] = max(best[v], rate)
            ratio = best["stacked"] / best["loop"] if {"stacked", "loop"} <= best.keys() else float("nan")
            print(f"{threads:>7} {B:>5} " + " ".join(f"{best[v]:>9.0f}" for v in variants) + f"  {ratio:.2f}×",
                  flush=True)


if __name__ == "__main__":
    main()

"""Benchmark bnexp's trainer against a plain PyTorch training loop (DataLoader + nn.Sequential / the same model).

Both sides train the same architecture on the same data for the same number of steps, batch size and dtype
(float32), SGD lr 0.01:

* **bnexp**: the engine's own training loop, ``bnexp.training.loop.Trainer``, built from the engine's
  ``bnexp.engines.train.Networks`` exactly as ``fit.train_all`` builds it (the replicate's model, its probe
  batch and precision plan; the dataset resident on the device, index tensors per epoch, running loss/accuracy
  sums on the device; on CUDA bf16 autocast with float32 norms and channels_last for convnets,
  ``runtime.amp=auto``), timed over ``Trainer.train_epoch()`` without logging;
* **plain**: ``torch.utils.data.DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`` over CPU tensors,
  and per batch ``model(x)``, ``cross_entropy``, ``zero_grad``, ``backward``, ``step`` in float32 (on CUDA
  with ``pin_memory`` and ``non_blocking`` copies). The CPU model is an ``nn.Sequential`` MLP (Linear →
  BatchNorm1d → ReLU per hidden layer, then a Linear readout); on CUDA it is bnexp's VGG19 / ResNet-50 (the
  same modules), in float32 without autocast.

Printed: images/second for both and their ratio, and the logging overhead: the extra time of an epoch that
ends with bnexp's per-epoch log point (the trainer's own measurements, ``training.measures``: running means,
test-set pass, the default probe — rank_torch, soft_rank and rank_lower_bound of every hidden layer, loss,
per-layer gradient norms) as a percentage of an epoch without it.
Timings are the best of --repeats interleaved runs after one warm-up epoch. Results: docs/performance.md.

    python scripts/bench_train.py                      # CPU: MLP 3072 → 512 ×10, batch 128 (+ CUDA if present)
    python scripts/bench_train.py --width 128 --epochs 3
    python scripts/bench_train.py --skip cpu           # the CUDA section only (VGG19, ResNet-50)
    python scripts/bench_train.py --width 32 --depth 2 --steps 4 --n-test 64 --epochs 1 --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnexp import config, data, engines
from bnexp.engines import train
from bnexp.runtime import DTYPES
from bnexp.training.loop import Trainer
from bnexp.training.optim import OptimSpec
from bnexp.training.precision import check_amp


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(cfg, device: torch.device) -> Trainer:
    """The Trainer of replicate ``cfg.seed`` exactly as ``bnexp train`` (``fit.train_all``) sets it up: the
    engine validates the config and its ``Networks`` give the model, the probe batch and the precision plan."""
    engines.validate(cfg)
    dtype = DTYPES[cfg.dtype]
    networks = train.Networks(cfg, device, dtype, check_amp(cfg.runtime.amp))
    split = data.make_dataset(cfg.data, cfg.seed, device, dtype)
    d_in = split[0][0].numel()
    optim = OptimSpec.from_cfg(cfg.optim, cfg.data)
    return Trainer(networks.model(cfg.seed, d_in), split, networks.probe_batch(split[0], split[1]), seed=cfg.seed,
                   lr=optim.lrs[0], optim=optim, spec=train.probe_spec(cfg),
                   batch_size=cfg.data.batch_size, drop_last=bool(cfg.data.drop_last),
                   precision=networks.precision(d_in))


def time_bnexp(trainer: Trainer, epochs: int, log: bool) -> float:
    """Seconds for ``epochs`` epochs of the trainer; with ``log`` each ends with its log point."""
    rows: list = []
    device = trainer.device
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(rows.extend if log else None)
    sync(device)
    return time.perf_counter() - start


def time_plain(model: nn.Module, loader: DataLoader, epochs: int, device: torch.device) -> float:
    """Seconds for ``epochs`` epochs of the plain loop."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - start


def plain_mlp(d_in: int, width: int, depth: int, n_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for l in range(depth):
        layers += [nn.Linear(d_in if l == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, n_classes))


def report(title: str, n_images: int, epochs: int, best: dict[str, float]) -> None:
    ips_b, ips_p = n_images / best["bnexp"], n_images / best["plain"]
    overhead = 100 * (best["logged"] - best["bnexp"]) / best["bnexp"]
    per_log = (best["logged"] - best["bnexp"]) / epochs
    print(f"| {title} | {ips_p:,.0f} | {ips_b:,.0f} | **{ips_b / ips_p:.2f}×** | {overhead:.1f}% | {per_log:.3f} |",
          flush=True)


def header(kind: str) -> None:
    print(f"\n| {kind} | plain loop (img/s) | bnexp (img/s) | bnexp / plain | logging overhead per epoch "
          "| one log point (s) |")
    print("|---|---:|---:|---:|---:|---:|")


def cpu(args) -> None:
    n_train = args.batch * args.steps
    overrides = ["model=mlp", f"model.width={args.width}", f"model.depth={args.depth}", "norm=bn_torch",
                 "act=relu", "init=torch_default", "data=gaussian", "data.dim=3072", f"data.n_train={n_train}",
                 f"data.n_test={args.n_test}", f"data.batch_size={args.batch}", "dtype=float32", "optim.lr=0.01",
                 f"optim.epochs={args.epochs}", "runtime.device=cpu", "runtime.progress=false"]
    cfg = config.compose("train", overrides)
    device = torch.device("cpu")
    torch.set_num_threads(args.threads)
    print(f"\n## CPU: MLP 3072 → {args.width} × {args.depth} (Linear → BN → ReLU) → 10, batch {args.batch}, "
          f"{args.steps} steps an epoch, {args.epochs} epochs, float32, {args.threads} torch threads "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores); best of {args.repeats}")
    header("model")
    x, y, *_ = data.make_dataset(cfg.data, cfg.seed, "cpu", torch.float32)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True)
    best = dict.fromkeys(("plain", "bnexp", "logged"), float("inf"))
    trainer = make_trainer(cfg, device)
    model = plain_mlp(3072, args.width, args.depth, 10)
    time_bnexp(trainer, 1, False)  # warm-up
    time_plain(model, loader, 1, device)
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], time_plain(model, loader, args.epochs, device))
        best["bnexp"] = min(best["bnexp"], time_bnexp(trainer, args.epochs, False))
        best["logged"] = min(best["logged"], time_bnexp(trainer, args.epochs, True))
    report(f"MLP d={args.width}, L={args.depth}", n_train * args.epochs, args.epochs, best)


def cuda(args) -> None:
    if not torch.cuda.is_available():
        print("\n## CUDA: skipped (torch.cuda.is_available() is False)")
        return
    device = torch.device("cuda")
    print(f"\n## CUDA ({torch.cuda.get_device_name(device)}): CIFAR-shaped random images (3×32×32), batch "
          f"{args.batch}, {args.gpu_steps} steps an epoch; bnexp: bf16 autocast + channels_last (runtime.amp=auto), "
          f"plain: DataLoader fp32; best of {args.repeats}")
    header("model")
    n_train = args.batch * args.gpu_steps
    for name, model_cfg in (("VGG19", "vgg19"), ("ResNet-50", "resnet50")):
        overrides = [f"model={model_cfg}", "norm=bn_torch", "act=relu", "init=torch_default", "data=shifted_gaussian",
                     "data.shape=[3,32,32]", f"data.n_train={n_train}", f"data.n_test={args.n_test}",
                     f"data.batch_size={args.batch}", "dtype=float32", "optim.lr=0.01", "optim.epochs=1",
                     "runtime.device=cuda", "runtime.progress=false"]
        try:
            cfg = config.compose("train", overrides)
            trainer = make_trainer(cfg, device)
        except Exception as err:  # the model may not exist yet in this checkout
            print(f"| {name} | skipped: {type(err).__name__}: {str(err)[:120]} | | | | |")
            continue
        x, y, *_ = data.make_dataset(cfg.data, cfg.seed, "cpu", torch.float32)
        loader = DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True, pin_memory=True)
        model = train.make_model(cfg, x[0].numel(), 10, cfg.seed, device, torch.float32)
        best = dict.fromkeys(("plain", "bnexp", "logged"), float("inf"))
        time_bnexp(trainer, 1, False)  # warm-up (cuDNN, allocator)
        time_plain(model, loader, 1, device)
        for _ in range(args.repeats):
            best["plain"] = min(best["plain"], time_plain(model, loader, args.epochs, device))
            best["bnexp"] = min(best["bnexp"], time_bnexp(trainer, args.epochs, False))
            best["logged"] = min(best["logged"], time_bnexp(trainer, args.epochs, True))
        report(name, n_train * args.epochs, args.epochs, best)
        del trainer, model, loader
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", default=512, type=int)
    parser.add_argument("--depth", default=10, type=int)
    parser.add_argument("--batch", default=128, type=int)
    parser.add_argument("--steps", default=100, type=int, help="CPU: steps per epoch")
    parser.add_argument("--gpu-steps", default=100, type=int, help="CUDA: steps per epoch")
    parser.add_argument("--n-test", default=1000, type=int)
    parser.add_argument("--epochs", default=2, type=int)
    parser.add_argument("--repeats", default=3, type=int)
    parser.add_argument("--threads", default=torch.get_num_threads(), type=int, help="CPU: torch threads, both sides")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: cpu, cuda")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"torch {torch.__version__}")
    if "cpu" not in skip:
        cpu(args)
    if "cuda" not in skip:
        cuda(args)


if __name__ == "__main__":
    main()

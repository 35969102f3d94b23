"""Paper-scale training cost of figures, estimated from a few measured SGD steps of each figure's own networks.

For every figure given (default: the training figures of the ortho and depth papers) the script takes its
paper-scale runs (``fig.grids("paper")``, each run counted once), builds each distinct network exactly as the
engine does (``engines.train.Networks``: the config's model, init, precision plan) and times ``--steps`` steps of the
engine's own ``Trainer.step`` on random inputs of the dataset's shape (CIFAR-10 3×32×32, MNIST 1×28×28, after a
warm-up step). A run costs ``n_seeds × epochs × ⌈n_train / B⌉`` steps; log points (eval passes, probes) are not
included. Prints, per figure, its runs and the estimated hours on this machine, with the seconds per step of each
network; results go to docs/performance.md.

    python scripts/cost_paper.py                                     # = make cost-paper
    python scripts/cost_paper.py --figures ortho/fig7 --steps 3 --device cuda
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
from omegaconf import OmegaConf

from bnexp import figures
from bnexp.engines.train import Networks, probe_spec
from bnexp.results import run_dir
from bnexp.runtime import DTYPES
from bnexp.training.loop import Trainer
from bnexp.training.optim import OptimSpec
from bnexp.training.precision import check_amp

# input shape, training and test samples, classes of each dataset the paper scales read
SHAPES = {"cifar10": ((3, 32, 32), 50_000, 10_000, 10), "cifar100": ((3, 32, 32), 50_000, 10_000, 100),
          "mnist": ((1, 28, 28), 60_000, 10_000, 10), "fashion_mnist": ((1, 28, 28), 60_000, 10_000, 10)}
DEFAULT = ("ortho/fig3", "ortho/fig4", "ortho/fig7", "depth/fig4", "depth/fig6", "depth/figG1", "depth/figG2",
           "depth/figH1", "depth/figH2", "depth/figH3", "depth/figH4")


def signature(cfg) -> tuple:
    """What a step's cost depends on: the network, the batch, the dataset's shape, dtype and device."""
    return (str(cfg.model), str(cfg.norm.name), str(cfg.act.name), int(cfg.data.batch_size), str(cfg.data.name),
            str(cfg.dtype))


def step_seconds(cfg, steps: int, device: torch.device) -> float:
    """Seconds per ``Trainer.step`` of ``cfg``'s network on random inputs (after one warm-up step)."""
    shape, _, _, classes = SHAPES[str(cfg.data.name)]
    cfg = OmegaConf.merge(cfg, {"data": {"n_classes": classes}})  # a writable copy
    dtype = DTYPES[str(cfg.dtype)]
    B = int(cfg.data.batch_size)
    n = 4 * B
    x = torch.randn(n, *shape, dtype=dtype, device=device)
    y = torch.randint(0, classes, (n,), device=device)
    networks = Networks(cfg, device, dtype, check_amp(cfg.runtime.get("amp", "auto")))
    d_in = math.prod(shape)
    trainer = Trainer(networks.model(int(cfg.seed), d_in), (x, y, x[:B], y[:B]), (x[:B], y[:B]), seed=int(cfg.seed),
                      lr=float(cfg.optim.lr), optim=OptimSpec.from_cfg(cfg.optim, cfg.data), spec=probe_spec(cfg),
                      batch_size=B, precision=networks.precision(d_in))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, n, (B,), generator=gen).to(device) for _ in range(steps + 1)]
    trainer.model.train()
    trainer.step(batches[0])
    sync(device)
    start = time.perf_counter()
    for idx in batches[1:]:
        trainer.step(idx)
    sync(device)
    return (time.perf_counter() - start) / steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_steps(cfg) -> int:
    """SGD steps of the whole run: every seed, every epoch, ⌈n_train / B⌉ steps an epoch."""
    _, n_train, _, _ = SHAPES[str(cfg.data.name)]
    n_train = int(cfg.data.get("n_train") or n_train)
    return int(cfg.n_seeds) * int(cfg.optim.epochs) * math.ceil(n_train / int(cfg.data.batch_size))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default=",".join(DEFAULT), help="comma-separated figure ids")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per distinct network")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {where}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); SGD steps only (no log "
          f"points); seconds per step from {args.steps} steps after a warm-up")
    measured: dict[tuple, float] = {}
    for fig_id in args.figures.split(","):
        fig = figures.get(fig_id)
        runs = {str(run_dir(c)): c for grid in fig.grids("paper").values() for c in grid.configs()}
        total, lines = 0.0, []
        for cfg in runs.values():
            key = signature(cfg)
            if key not in measured:
                measured[key] = step_seconds(cfg, args.steps, device)
                lines.append(f"    {cfg.model.name}-{cfg.model.depth} ({cfg.norm.name}, {cfg.act.name}) B "
                             f"{cfg.data.batch_size} on {cfg.data.name}: {measured[key] * 1e3:9.1f} ms/step")
            total += run_steps(cfg) * measured[key]
        print(f"{fig_id}: {len(runs)} runs, {total / 3600:,.1f} h of SGD steps", flush=True)
        for line in lines:
            print(line, flush=True)


if __name__ == "__main__":
    main()

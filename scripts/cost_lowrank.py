"""Paper-scale cost of each low-rank figure, one run at a time against stacked groups, estimated from short
measured runs of the figures' own networks.

For each figure ``lowrank/figN`` its paper-scale runs (``fig.grids("paper")``) are split into the groups a sweep
would stack (``bnexp.engines.train_group.plan``: same network, batch size and schedule; learning rate, weight
decay and seed differ). For every group the script builds the runs' models exactly as the engine does
(``engines.train.make_model``, d_in = 3072 for CIFAR-10, 784 for MNIST) and times, on random inputs of that size:

* **loop**: one SGD step of each run after the other (its own ``torch.optim.SGD``, ``make_optimizer``), the
  per-run path's step;
* **stacked**: one ``StackedSGD.step`` of the whole group;
* **measure**: one epoch's log point of a run (eval-mode passes over the training and test sets in chunks of B,
  as ``training.measures.evaluate`` does; the same for both paths), extrapolated from a few chunks.

A run is ``epochs × ceil(n_train / B)`` steps and ``epochs`` log points; the figure's cost is the sum over its
groups. Prints seconds per step and the estimated hours per figure; results go to docs/performance.md.

    python scripts/cost_lowrank.py                       # = make cost-lowrank (all seven figures)
    python scripts/cost_lowrank.py --figures lowrank/fig2 --seconds 0.5 --threads 2
    python scripts/cost_lowrank.py --device cuda          # the same on a GPU
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F

from bnexp import figures
from bnexp.engines import train_group
from bnexp.engines.train import make_model
from bnexp.results import run_dir
from bnexp.training.optim import OptimSpec, make_optimizer
from bnexp.training.stacked import StackedSGD

SAMPLES = 4096  # random inputs the timed steps draw their minibatches from
SIZES = {"cifar10": (3072, 50_000, 10_000), "mnist": (784, 60_000, 10_000)}  # d_in, training and test samples


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, seconds: float, device: torch.device) -> float:
    """Seconds per call of ``step``: a warm-up call, then as many calls as fit in about ``seconds`` (the device
    drained before the clock is read)."""
    step()
    _sync(device)
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
        if calls % 16 == 0:
            _sync(device)
    _sync(device)
    return (time.perf_counter() - start) / calls


def group_cost(cfgs, seconds: float, device: torch.device | str = "cpu") -> dict:
    """Measured seconds per step (loop: all runs one after another; stacked: the group) and per log point."""
    cfg = cfgs[0]
    d_in, n_train, n_test = SIZES[str(cfg.data.name)]
    n_train, n_test = int(cfg.data.get("n_train") or n_train), int(cfg.data.get("n_test") or n_test)
    B = int(cfg.data.batch_size)
    optims = [OptimSpec.from_cfg(c.optim, c.data) for c in cfgs]
    device = torch.device(device)
    x, y = torch.randn(SAMPLES, d_in, device=device), torch.randint(0, 10, (SAMPLES,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def batch() -> torch.Tensor:
        return torch.randint(0, SAMPLES, (B,), generator=gen, device=device)

    models = [make_model(c, d_in, 10, int(c.seed), device, torch.float32) for c in cfgs]
    opts = [make_optimizer(o, m.parameters(), o.lr) for o, m in zip(optims, models)]

    def loop_step() -> None:
        for model, opt, o in zip(models, opts, optims):
            idx = batch()
            loss = F.cross_entropy(model(x[idx]), y[idx]) if o.loss == "ce" else F.mse_loss(
                model(x[idx]), F.one_hot(y[idx], 10).float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    fresh = [make_model(c, d_in, 10, int(c.seed), device, torch.float32) for c in cfgs]
    sgd = StackedSGD(fresh, x, y, lrs=[o.lr for o in optims], weight_decays=[o.torch_weight_decay for o in optims],
                     momentum=optims[0].momentum, loss=optims[0].loss, wd_on=optims[0].wd_on)

    def stacked_step() -> None:
        sgd.step(torch.stack([batch() for _ in cfgs]))

    model = models[0].eval()

    def eval_chunk() -> None:
        with torch.no_grad():
            model(x[batch()])

    loop = _timed(loop_step, seconds, device)
    stacked = _timed(stacked_step, seconds, device)
    chunk = _timed(eval_chunk, seconds / 4, device)
    steps = optims[0].epochs * math.ceil(n_train / B)
    measure = optims[0].epochs * math.ceil((n_train + n_test) / B) * chunk  # per run
    return {"R": len(cfgs), "B": B, "model": f"{cfg.model.name}-{cfg.norm.name}-{cfg.model.depth}-{cfg.model.width}",
            "d_in": d_in, "steps": steps, "loop_step": loop, "stacked_step": stacked,
            "loop_h": (steps * loop + len(cfgs) * measure) / 3600,
            "stacked_h": (steps * stacked + len(cfgs) * measure) / 3600}


def figure_groups(fig) -> list[list]:
    """The figure's paper-scale runs as a sweep would train them: stacked groups, then the runs left alone."""
    cfgs = [c for grid in fig.grids("paper").values() for c in grid.configs()]
    unique = list({str(run_dir(c)): c for c in cfgs}.values())  # grids of one figure may share runs
    groups = [[c for c, _ in g] for g in train_group.plan([(c, run_dir(c)) for c in unique])]
    grouped = {str(run_dir(c)) for g in groups for c in g}
    return groups + [[c] for c in unique if str(run_dir(c)) not in grouped]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default="all", help="comma-separated ids, or all")
    ap.add_argument("--seconds", type=float, default=1.0, help="rough time per measured variant and group")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [f for f in figures.all_figures() if f.id.startswith("lowrank/")]
    if args.figures != "all":
        wanted = args.figures.split(",")
        chosen = [f for f in chosen if f.id in wanted]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor()
                                                                                 or platform.machine())
    print(f"# {where}, torch {torch.__version__}, {args.threads} thread(s), "
          "float32; seconds per step (loop: every run of the group one after another), hours per figure")
    for fig in chosen:
        rows = [group_cost(g, args.seconds, args.device) for g in figure_groups(fig)]
        runs = sum(r["R"] for r in rows)
        loop, stacked = sum(r["loop_h"] for r in rows), sum(r["stacked_h"] for r in rows)
        print(f"{fig.id}: {runs} runs in {len(rows)} group(s): loop {loop:,.1f} h, stacked {stacked:,.1f} h "
              f"({loop / stacked:.2f}×)", flush=True)
        for r in rows:
            print(f"    {r['model']:>22s} d_in {r['d_in']:>4d} B {r['B']:>3d} R {r['R']:>2d}  "
                  f"{r['steps']:>9,d} steps/run  loop {r['loop_step'] * 1e3:7.2f} ms  stacked "
                  f"{r['stacked_step'] * 1e3:7.2f} ms  ({r['loop_step'] / r['stacked_step']:.2f}×)", flush=True)


if __name__ == "__main__":
    main()

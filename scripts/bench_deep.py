"""Benchmark training very deep narrow MLPs: bnexp's Trainer against a plain PyTorch loop, and what removes overhead.

The work (spec depth §0.2 and "003 Fig 4"): L hidden layers Linear(d → d) → BatchNorm1d → σ(α_ℓ·z) with
α_ℓ = (ℓ+1)^(−0.4) and σ = tanh, orthogonal weights, biases, a readout to 10 classes, d = 100, CIFAR-10-sized
random inputs (d_in = 3072) resident on the device, batch B = 100 gathered by index each step, SGD lr 0.001,
cross-entropy, float32. Each step is ≈ 12·L tiny kernels, so at L = 1000 the time is per-op overhead, not flops.

Variants (seconds per optimiser step, the best of --repeats interleaved runs after a warm-up):

* **plain**: an ``nn.Sequential`` of L blocks [Linear, BatchNorm1d, tanh(α_ℓ·)] + readout, ``torch.optim.SGD``;
  per step: gather x[idx], forward, cross-entropy, ``zero_grad``, backward, ``step``;
* **engine**: ``bnexp.training.loop.Trainer.step`` on the Trainer the engine builds from
  ``config.compose("train", ["model=mlp", "model.depth=L", ..., "act=tanh", "init=orthogonal"])`` (its model,
  probe batch and precision plan, as ``fit.train_all``; ``runtime.amp`` from --amp, off by default: same float32
  work on CUDA as the plain loop);
* **compile**: ``torch.compile`` of the plain model (mode default); **compile-ro**: mode "reduce-overhead"
  (CUDA only); **regional**: each d → d block compiled on its own (one graph reused by every block: compile time
  independent of L, but a guard check and a graph call per block). A compile is cut off after --compile-timeout
  seconds and then not tried at larger L, nor when its time at a smaller L, scaled by L, passes the limit;
* **graph** (CUDA only): the whole step (gather, forward, loss, backward, SGD) captured once in a CUDA graph
  (``torch.cuda.graph``, static index tensor) and replayed per step;
* **stacked**: --stack S runs of the same network (S seeds: what ``runtime.stack`` does for a sweep over seeds with
  the data fixed) trained as one model by ``bnexp.training.stacked.StackedSGD`` (batched matmuls over the runs, one
  flat parameter tensor); its time is per run, i.e. the stacked step divided by S.

Measure share: the time of one log point of the depth figures' training runs (Fig 6: ``probe.weight_metrics=
[isometry_gap]``, ``probe.grad_norms=true`` — φ(W_ℓ) and ‖∇W_ℓ‖_F of every layer on the fixed probe batch of B —
and the eval-mode test pass over --n-test = 10 000 samples, with the running train loss/accuracy), relative to one
CIFAR-10 epoch of 500 engine steps (50 000 / 100) estimated from the measured step time. The inductor cache
(/tmp/torchinductor_$USER) makes a second run's compile much faster than the first. Results: docs/performance.md.

    python scripts/bench_deep.py                                   # = make bench-deep (CPU, 1 thread)
    python scripts/bench_deep.py --depths 100,500,1000 --repeats 3 --seconds 4
    python scripts/bench_deep.py --device cuda --variants plain,engine,compile,compile-ro,graph
    python scripts/bench_deep.py --depths 3 --width 8 --batch 8 --d-in 16 --n-test 64 --repeats 1  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import platform
import signal
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp import config, data, engines
from bnexp.engines import train
from bnexp.probe import values_to_rows
from bnexp.runtime import DTYPES
from bnexp.training.loop import Trainer
from bnexp.training.measures import EVERY, LOG
from bnexp.training.optim import OptimSpec
from bnexp.training.precision import check_amp
from bnexp.training.rng import forked_rng

LR, GAIN_EXPONENT, N_CLASSES = 1e-3, 0.4, 10
EPOCH_STEPS = 500  # CIFAR-10: 50 000 training images / B = 100
Step = Callable[[Tensor], None]  # one optimiser step on the minibatch of these indices


class CompileTimeout(Exception):
    """A compile ran past --compile-timeout."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise :class:`CompileTimeout` in the block after ``seconds`` (SIGALRM: main thread, POSIX; elsewhere no
    limit). Inductor's passes are Python, so the alarm interrupts a compile between two bytecodes. An alarm that
    lands in a callback whose exceptions Python ignores (a weakref's, a ``__del__``) is lost, so it fires again
    every second, and a block that ends after its deadline raises all the same."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return
    expired = False

    def expire(signum, frame):
        nonlocal expired
        expired = True
        raise CompileTimeout(f"compile took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if expired:
        raise CompileTimeout(f"compile took more than {seconds:g} s")


# ------------------------------------------------------------------------------------------------ the work


class Block(nn.Module):
    """x ↦ tanh(α_ℓ · BN(W x + b)); α_ℓ is a 0-d buffer so that every block runs the same code (one compiled
    graph serves them all: a Python float would be specialised into each block's graph)."""

    def __init__(self, d_in: int, d: int, alpha: float):
        super().__init__()
        self.fc, self.norm = nn.Linear(d_in, d), nn.BatchNorm1d(d)
        self.register_buffer("alpha", torch.tensor(alpha))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.alpha * self.norm(self.fc(x)))


def plain_model(depth: int, width: int, d_in: int, device: torch.device) -> nn.Sequential:
    """L blocks with α_ℓ = (ℓ+1)^(−0.4) and orthogonal weights (as the engine's init), then the readout."""
    blocks = [Block(d_in if l == 0 else width, width, (l + 1) ** -GAIN_EXPONENT) for l in range(depth)]
    model = nn.Sequential(*blocks, nn.Linear(width, N_CLASSES))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
    return model.to(device)


def resident_data(n: int, d_in: int, device: torch.device, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)  # N(0, 1) inputs, uniform labels
    return torch.randn(n, d_in, generator=g).to(device), torch.randint(0, N_CLASSES, (n,), generator=g).to(device)


def minibatches(n: int, batch: int, count: int, device: torch.device, seed: int = 1) -> list[Tensor]:
    """``count`` index tensors of ``batch`` distinct samples out of ``n``, on the device (cycled by the timers)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g)[:batch].to(device) for _ in range(count)]


def sgd_step(model: nn.Module, x: Tensor, y: Tensor) -> Step:
    """The plain loop's step on ``model`` (eager, compiled or with compiled blocks)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()

    def step(idx: Tensor) -> None:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def regional(model: nn.Sequential) -> nn.Sequential:
    """``model`` with every d → d block compiled in place (the first block, d_in → d, stays eager: its own shape
    would make the shared graph's sizes dynamic)."""
    for block in list(model)[1:-1]:
        block.compile()
    return model


def graphed_step(model: nn.Module, x: Tensor, y: Tensor, first: Tensor) -> Step:
    """The whole plain step captured in one CUDA graph (torch's whole-network capture: warm-up on a side stream,
    grads set to None before capture so backward allocates them in the graph's pool); each step copies the
    indices into the static index tensor and replays."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    static_idx = first.clone()

    def body() -> None:
        loss = F.cross_entropy(model(x[static_idx]), y[static_idx])
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        body()

    def step(idx: Tensor) -> None:
        static_idx.copy_(idx)
        graph.replay()

    return step


def engine_trainer(depth: int, width: int, batch: int, d_in: int, n_train: int, n_test: int, device: torch.device,
                   amp: str = "off") -> Trainer:
    """The engine's Trainer for the depth figures' training setup, built as ``fit.train_all`` builds it."""
    overrides = ["model=mlp", f"model.depth={depth}", f"model.width={width}", "model.bias=true",
                 "model.order=norm_act", f"model.gain_exponent={GAIN_EXPONENT}", "norm=bn_torch", "act=tanh",
                 "init=orthogonal", "dtype=float32", "data=gaussian", f"data.dim={d_in}", f"data.n_train={n_train}",
                 f"data.n_test={n_test}", f"data.batch_size={batch}", f"data.n_classes={N_CLASSES}",
                 f"optim.lr={LR}", "optim.epochs=1", "probe.metrics=[]", "probe.weight_metrics=[isometry_gap]",
                 "probe.grad_norms=true", f"runtime.device={device.type}", f"runtime.amp={amp}",
                 "runtime.progress=false"]
    cfg = config.compose("train", overrides)
    engines.validate(cfg)
    dtype = DTYPES[cfg.dtype]
    networks = train.Networks(cfg, device, dtype, check_amp(cfg.runtime.amp))
    split = data.make_dataset(cfg.data, cfg.seed, device, dtype)
    optim = OptimSpec.from_cfg(cfg.optim, cfg.data)
    return Trainer(networks.model(cfg.seed, d_in), split, networks.probe_batch(split[0], split[1]), seed=cfg.seed,
                   lr=optim.lrs[0], optim=optim, spec=train.probe_spec(cfg), batch_size=batch,
                   precision=networks.precision(d_in))


# ------------------------------------------------------------------------------------------------ timers


def time_steps(step: Step, batches: list[Tensor], steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps, cycling through ``batches``."""
    sync(device)
    start = time.perf_counter()
    for t in range(steps):
        step(batches[t % len(batches)])
    sync(device)
    return (time.perf_counter() - start) / steps


def time_log_point(trainer: Trainer) -> dict[str, float]:
    """Seconds of each LOG measurement of ``trainer`` (its items moved to the host, as the log point's one
    transfer) and their sum, ``log point``. Needs at least one step since the last log point (running means)."""
    times: dict[str, float] = {}
    for m in trainer.measurements:
        if m.when in (LOG, EVERY):
            sync(trainer.device)
            start = time.perf_counter()
            with forked_rng(trainer.device):
                values_to_rows(m(trainer), trainer.seed, 1)
            times[type(m).__name__] = time.perf_counter() - start
    trainer.model.train()
    times["log point"] = sum(times.values())
    return times


# ------------------------------------------------------------------------------------------------ the run


WRAPS = {"plain": lambda model: model, "compile": torch.compile, "regional": regional,
         "compile-ro": lambda model: torch.compile(model, mode="reduce-overhead")}  # the plain loop's model, as run
VARIANTS = ("plain", "engine", "compile", "compile-ro", "regional", "graph", "stacked")
CUDA_ONLY = {"compile-ro", "graph"}


def stacked_step(S: int, depth: int, width: int, d_in: int, x: Tensor, y: Tensor) -> Step:
    """One StackedSGD step of S runs of the engine's network (seeds 0 … S−1, each its own orthogonal draw), every
    run on the same minibatch (the timing does not depend on which samples)."""
    from bnexp.nn.init import init_weights
    from bnexp.nn.models import build_model
    from bnexp.training.stacked import StackedSGD

    models = []
    for seed in range(S):
        torch.manual_seed(seed)
        model = build_model("mlp", d_in=d_in, d_out=N_CLASSES, width=width, depth=depth, norm="bn_torch", act="tanh",
                            bias=True, order="norm_act", gain_exponent=GAIN_EXPONENT)
        init_weights(model, "orthogonal", generator=torch.Generator().manual_seed(seed))
        models.append(model.to(x.device))
    sgd = StackedSGD(models, x, y, lrs=[LR] * S, weight_decays=[0.0] * S, momentum=0.0)
    return lambda idx: sgd.step(idx.expand(S, -1))


def build(variant: str, base: nn.Module, trainer: Trainer, x: Tensor, y: Tensor, first: Tensor, stack: int = 4) -> Step:
    if variant == "engine":
        return trainer.step
    if variant == "stacked":
        depth, width = len(base) - 1, base[-1].in_features
        return stacked_step(stack, depth, width, x.shape[1], x, y)
    model = copy.deepcopy(base)
    return graphed_step(model, x, y, first) if variant == "graph" else sgd_step(WRAPS[variant](model), x, y)


def reason(err: BaseException) -> str:
    """The first line of ``err``, or of the :class:`CompileTimeout` that torch wrapped into it."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, CompileTimeout):
        cause = cause.__cause__ or cause.__context__
    shown = cause or err
    text = str(shown).splitlines()[0][:160] if str(shown) else ""
    return f"{type(shown).__name__}: {text}"


def prepare(variants: list[str], depth: int, base, trainer, x, y, batches, device, timeout: float,
            skipped: dict[str, str], compile_times: dict[str, tuple[int, float]], stack: int = 4) -> dict[str, Step]:
    """Each variant's step, built and warmed up (compiled variants within ``timeout``); failures go to
    ``skipped`` with their reason and are not tried again at larger depths. A whole-model compile grows at least
    linearly with L (its graph has ≈ 12·L nodes): one that took T at a smaller depth L₀ (``compile_times``) is
    not tried when T·L/L₀ > ``timeout``."""
    steps: dict[str, Step] = {}
    for v in variants:
        if v in skipped:
            continue
        compiled = v.startswith("compile") or v == "regional"
        if v in compile_times and timeout > 0:
            smaller, took = compile_times[v]
            if depth > smaller and took * depth / smaller > timeout:
                skipped[v] = (f"at L = {depth}: not tried, compile predicted ≥ {took * depth / smaller:.0f} s "
                              f"(> --compile-timeout {timeout:g} s) from {took:.1f} s at L = {smaller}")
                continue
        start = time.perf_counter()
        try:
            with deadline(timeout if compiled else 0):
                step = build(v, base, trainer, x, y, batches[0], stack)
                time_steps(step, batches, 3, device)  # warm-up: compile, cuDNN/BLAS, allocator, graph trees
        except Exception as err:  # a variant that cannot run here is reported, not fatal
            skipped[v] = f"at L = {depth}: {reason(err)}"
            if compiled:
                torch._dynamo.reset()
            continue
        if compiled:
            took = time.perf_counter() - start
            print(f"#   {v}: compiled and warmed up in {took:.1f} s at L = {depth}", flush=True)
            if v != "regional":  # one block's graph: its compile does not grow with L
                compile_times[v] = (depth, took)
        steps[v] = step
    return steps


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="100,1000")
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--d-in", type=int, default=3072)
    ap.add_argument("--n-test", type=int, default=10_000, help="test-set size of the measured log point")
    ap.add_argument("--variants", default="plain,engine,compile,compile-ro,regional,graph",
                    help="CUDA-only ones are skipped on the CPU")
    ap.add_argument("--seconds", type=float, default=2.0, help="rough time per measurement")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (spec depth §0.9: 1 for tiny matmuls)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda when available")
    ap.add_argument("--amp", default="off", help="the engine's runtime.amp (off: float32 like the plain loop)")
    ap.add_argument("--compile-timeout", type=float, default=120.0, help="seconds a compile may take (0: no limit)")
    ap.add_argument("--stack", type=int, default=4, help="runs trained as one model in the stacked variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("# --device cuda: torch.cuda.is_available() is False; running on the cpu")
        device = torch.device("cpu")
    if set(args.variants.split(",")) - set(VARIANTS):
        ap.error(f"--variants: choose from {','.join(VARIANTS)}")
    variants = [v for v in args.variants.split(",") if device.type == "cuda" or v not in CUDA_ONLY]
    skipped: dict[str, str] = {v: "CUDA only" for v in args.variants.split(",") if v not in variants}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    depths = sorted(int(d) for d in args.depths.split(","))
    print(f"# {where} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} torch threads, "
          f"device {device.type}; MLP d_in {args.d_in} → {args.width} × L (Linear → BN → tanh(α_ℓ·), "
          f"α_ℓ = (ℓ+1)^-{GAIN_EXPONENT}, orthogonal) → {N_CLASSES}, B = {args.batch}, SGD lr {LR}, float32; "
          f"s/step, best of {args.repeats}", flush=True)
    results: dict[int, dict[str, float]] = {}
    shares: dict[int, dict[str, float]] = {}
    compile_times: dict[str, tuple[int, float]] = {}
    for depth in depths:
        n_train = 10 * args.batch
        x, y = resident_data(n_train, args.d_in, device)
        batches = minibatches(n_train, args.batch, 10, device)
        base = plain_model(depth, args.width, args.d_in, device)
        trainer = engine_trainer(depth, args.width, args.batch, args.d_in, n_train, args.n_test, device, args.amp)
        steps_of = prepare(variants, depth, base, trainer, x, y, batches, device, args.compile_timeout, skipped,
                           compile_times, args.stack)
        # calibrate: steps so that the plain loop takes about --seconds
        per_step = time_steps(steps_of["plain"], batches, 2, device) if "plain" in steps_of else 0.1
        steps = max(3, math.ceil(args.seconds / max(per_step, 1e-6)))
        best = dict.fromkeys(steps_of, math.inf)
        share = {}
        for _ in range(args.repeats):
            for v, step in steps_of.items():
                best[v] = min(best[v], time_steps(step, batches, steps, device))
            if "engine" in steps_of:  # it has just stepped: its running means are defined
                for name, seconds in time_log_point(trainer).items():
                    share[name] = min(share.get(name, math.inf), seconds)
        if "stacked" in best:
            best["stacked"] /= args.stack  # per run
        results[depth], shares[depth] = best, share
        print(f"#   L = {depth}: {steps} steps a measurement", flush=True)
        del steps_of, trainer, base
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(depths, variants, results, shares, skipped, args.n_test)


def report(depths, variants, results, shares, skipped, n_test: int) -> None:
    print("\n| variant | " + " | ".join(f"L = {d} (s/step) | × plain" for d in depths) + " |")
    print("|---|" + "---:|---:|" * len(depths))
    for v in variants:
        cells = []
        for d in depths:
            t, plain = results[d].get(v), results[d].get("plain")
            cells += [f"{t:.4f}" if t else "—", f"{t / plain:.2f}×" if t and plain else "—"]
        print(f"| {v} | " + " | ".join(cells) + " |")
    for v, why in skipped.items():
        print(f"# skipped {v}: {why}")
    if not any("engine" in results[d] for d in depths):
        return
    print(f"\n| L | engine step (s) | epoch of {EPOCH_STEPS} steps (s) | probe (s) | test pass of {n_test:,} (s) "
          "| log point (s) | share of the epoch |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for d in depths:
        step, s = results[d].get("engine"), shares[d]
        if step is None:
            continue
        epoch = EPOCH_STEPS * step
        print(f"| {d} | {step:.4f} | {epoch:.1f} | {s.get('Probe', math.nan):.2f} | {s.get('SetPass', math.nan):.2f} "
              f"| {s['log point']:.2f} | **{100 * s['log point'] / epoch:.1f}%** |")


if __name__ == "__main__":
    main()

"""The benchmark scripts still run: their measurement functions on a tiny network give positive, finite times.

``scripts/bench_deep.py`` (``make bench-deep``): the plain loop, the engine's Trainer and one log point of the depth
figures' measurements at L = 3, d = 8, B = 8 on the CPU, a couple of steps each; the plain model is the depth
paper's network (α_ℓ = (ℓ+1)^(−0.4), orthogonal weights), checked against an explicit float64 forward.
``scripts/bench_threads.py`` (``make bench-threads``): each thread plan on a tiny chain and a tiny training run, and its
competing process. ``scripts/gpu_check.sh`` (``make gpu-check``): without a CUDA device it reports the card stage and
stops, saying so.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def deep():
    return _script("bench_deep")


def _positive(seconds: float) -> None:
    assert math.isfinite(seconds) and seconds > 0


def test_bench_deep_times_the_plain_loop_the_engine_and_a_log_point(deep):
    cpu = torch.device("cpu")
    depth, width, batch, d_in = 3, 8, 8, 16
    x, y = deep.resident_data(4 * batch, d_in, cpu)
    batches = deep.minibatches(len(x), batch, 3, cpu)
    base = deep.plain_model(depth, width, d_in, cpu)
    _positive(deep.time_steps(deep.sgd_step(base, x, y), batches, 2, cpu))
    trainer = deep.engine_trainer(depth, width, batch, d_in, 4 * batch, 24, cpu)
    assert len(trainer.model.fc) == depth and trainer.optimizer.param_groups[0]["lr"] == deep.LR
    _positive(deep.time_steps(trainer.step, batches, 2, cpu))
    times = deep.time_log_point(trainer)
    assert {"Probe", "SetPass", "log point"} <= times.keys()
    for seconds in times.values():
        _positive(seconds)


def test_bench_deep_plain_model_is_the_shaped_orthogonal_network(deep):
    torch.manual_seed(0)
    depth, width, d_in = 4, 6, 10
    model = deep.plain_model(depth, width, d_in, torch.device("cpu")).double()
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.out_features <= m.in_features:  # orthonormal rows
            eye = torch.eye(width, dtype=torch.float64)
            assert torch.allclose(m.weight @ m.weight.T, eye, atol=1e-6)
    x = torch.randn(12, d_in, dtype=torch.float64)
    h = x
    for l, block in enumerate(list(model)[:-1]):  # explicit loop: BN with the batch's biased variance
        z = h @ block.fc.weight.T + block.fc.bias
        z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + block.norm.eps)
        h = torch.tanh((l + 1) ** -0.4 * z)
    expected = h @ model[-1].weight.T + model[-1].bias
    assert torch.allclose(model(x), expected, atol=1e-10)


def test_bench_threads_times_each_plan_and_stops_its_competing_process():
    threads = _script("bench_threads")
    p = threads.chain(16, 20)
    for plan in ("auto", 1, 2):
        _positive(threads.seconds(p, plan))
    with threads.competing(True):
        pass  # the spinning process is killed on exit, not left behind
    with threads.competing(False):
        pass
    cfg = threads.train_config(8, 2, "auto")
    assert (cfg.model.width, cfg.data.n_train, cfg.runtime.threads) == (8, 200, "auto")
    for plan in ("auto", 1):
        _positive(threads.train_seconds(8, 2, plan))


def test_bench_deep_stacked_variant_steps_every_run(deep):
    cpu = torch.device("cpu")
    x, y = deep.resident_data(32, 16, cpu)
    batches = deep.minibatches(len(x), 8, 3, cpu)
    base = deep.plain_model(3, 8, 16, cpu)
    step = deep.build("stacked", base, None, x, y, batches[0], stack=3)
    _positive(deep.time_steps(step, batches, 2, cpu))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit; on a card the script runs for minutes")
def test_gpu_check_stops_after_the_card_stage_without_cuda(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "no CUDA device here" in done.stdout and "== card: rc 0" in done.stdout
    assert "no CUDA device" in (tmp_path / "card.log").read_text()
    assert not (tmp_path / "bench_deep.log").exists()

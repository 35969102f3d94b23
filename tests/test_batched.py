"""Seeds probed together (``bnexp.probe.stacked``, ``runtime.batch_seeds``) against the per-seed loop, and the probe
options ``probe.batches``, ``probe.input`` and ``probe.weight_metrics``."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from bnexp import config, data, metrics, probe, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.probe import stacked
from bnexp.runtime import DTYPES

SMALL = ["model.depth=5", "model.width=16", "data.dim=12", "data.n_train=64", "data.n_test=8",
         "data.batch_size=12", "runtime.progress=false", "n_seeds=3", "seed=7"]
# Metrics whose value is a smooth function of the representation (rank_torch thresholds in float32 could flip
# at a rounding difference between bmm and mm); top eigenvalues, φ, soft rank and r(H) are compared to 1e-10.
PROBE = ["probe.metrics=[soft_rank,rank_lower_bound,isometry_gap,top_eigenvalues]", "probe.top_k=3",
         "probe.input=true", "probe.weight_metrics=[isometry_gap,soft_rank]"]

CONFIGS = {
    "bn_torch-relu-mlp-bias": ["norm=bn_torch", "act=relu", "init=torch_default"],
    "bn_theory-unit-linear-orthogonal": ["norm=bn_theory", "++norm.unit_norm=true", "act=linear", "init=orthogonal",
                                         "model.bias=false"],
    "bn_center-tanh-gain-xavier": ["norm=bn_center", "act=tanh", "model.gain_exponent=0.4", "init=xavier_normal",
                                   "model.bias=false"],
    "none-sin-gain-orthogonal": ["norm=none", "act=sin", "model.gain_exponent=0.4", "init=orthogonal"],
    "bn_torch-tanh-orthogonal-no-bias": ["norm=bn_torch", "act=tanh", "init=orthogonal", "model.bias=false"],
    "resmlp-bn_theory-orthogonal": ["model=resmlp", "norm=bn_theory", "act=relu", "init=orthogonal"],
    "resmlp-pre-bn_torch-xavier": ["model=resmlp", "model.placement=pre", "norm=bn_torch", "act=tanh",
                                   "init=xavier_normal"],
    "alignment-bn_torch-relu": ["norm=bn_torch", "act=relu", "probe.alignment=true", "probe.alignment_samples=5"],
    "two-probe-batches-last-layer-pre": ["norm=bn_theory", "act=sin", "init=orthogonal", "probe.batches=2",
                                         "probe.layers=last", "probe.point=pre"],
}


FakeWriter = results.MemoryWriter


def _cfg(*overrides: str):
    return config.compose("train", [*SMALL, *overrides])


def _run(*overrides: str) -> FakeWriter:
    writer = FakeWriter()
    train.run(_cfg(*overrides), writer)
    return writer


def assert_same_rows(got: list[tuple], expected: list[tuple], rtol: float = 1e-10) -> None:
    """Same (seed, step, layer, metric) in the same order; values within rtol relative, non-finite equal."""
    assert [r[:4] for r in got] == [r[:4] for r in expected]
    a, b = np.array([r[4] for r in got]), np.array([r[4] for r in expected])
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    np.testing.assert_array_equal(a[~np.isfinite(b)], b[~np.isfinite(b)])
    np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------------------ batched = loop


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batched_rows_equal_the_per_seed_loop(name):
    overrides = [*CONFIGS[name], *PROBE]
    loop = _run(*overrides, "runtime.batch_seeds=false")
    fast = _run(*overrides, "runtime.batch_seeds=true")
    assert fast.info["seed_batching"].startswith("vmap") and "seed_batching" not in loop.info
    assert {r[0] for r in fast.rows} == {7, 8, 9}
    assert_same_rows(fast.rows, loop.rows)
    assert any(r[3] == "weight_isometry_gap" for r in fast.rows) and any(r[2] == -1 for r in fast.rows)


def test_auto_batches_several_seeds_only_at_init():
    assert _run("n_seeds=2").info["seed_batching"].startswith("vmap")
    assert "seed_batching" not in _run("n_seeds=1").info  # one seed: the loop
    trained = _run("n_seeds=2", "optim.epochs=1", "runtime.batch_seeds=true", "dtype=float32")
    assert "seed_batching" not in trained.info  # training is always per seed
    assert {r[1] for r in trained.rows} == {0, 1}


def test_float32_batched_close_to_the_loop():
    overrides = ["dtype=float32", "norm=bn_theory", "act=tanh", "init=orthogonal", "probe.metrics=[soft_rank]"]
    assert_same_rows(_run(*overrides, "runtime.batch_seeds=true").rows,
                     _run(*overrides, "runtime.batch_seeds=false").rows, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_passes_and_init_workers_give_the_same_rows(monkeypatch, bias):
    # one seed per pass (memory budget), the next pass built on a thread while the current one is probed, and
    # the weight inits on two worker threads: the rows of one pass on one thread.
    overrides = [f"model.bias={str(bias).lower()}", "init=orthogonal", "norm=bn_torch", "act=tanh", *PROBE,
                 "n_seeds=4", "runtime.batch_seeds=true"]
    one = _run(*overrides)
    assert one.info["init_workers"] == 1 and one.info["seed_batching"].startswith("vmap, 4 seeds per pass")
    monkeypatch.setattr(stacked, "MEMORY_BUDGET", 1)
    torch.set_num_threads(2)  # the process's cores: auto uses them as init workers (torch ops stay at 1)
    many = _run(*overrides)
    assert torch.get_num_threads() == 2
    assert many.info["init_workers"] == 2 and many.info["threads"] == 1
    assert many.info["seed_batching"].startswith("vmap, 1 seeds per pass")
    assert many.info["seed_batching"].endswith("a model per seed" if bias else "one construction")
    assert_same_rows(many.rows, one.rows)  # a pass of 1 vs 4: bmm rounding only


@pytest.mark.parametrize("bias", [True, False])
def test_stack_builder_weights_are_make_model_weights(bias):
    cfg = _cfg(f"model.bias={str(bias).lower()}", "init=orthogonal", "norm=bn_torch")
    seeds, dtype = [3, 4, 5], torch.float64
    with ThreadPoolExecutor(2) as pool:
        builder = stacked.StackBuilder(lambda s: train._construct(cfg, 12, 10, s, dtype),
                                       lambda m, s: train._initialise(cfg, m, s), seeds, pool, 2)
        assert builder.shared is not bias  # biases keep construction draws: one model per seed
        st = builder.build(seeds, "cpu")
    for r, seed in enumerate(seeds):
        model = train.make_model(cfg, 12, 10, seed, "cpu", dtype)
        for name, tensor in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items():
            slices = st.params.get(f"net.{name}", st.buffers.get(f"net.{name}"))
            assert torch.equal(slices[r], tensor), name
    assert all(p.requires_grad for p in st.params.values())


def test_vmap_failure_falls_back_to_the_loop_under_auto(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("vmap: a model vmap cannot run")

    monkeypatch.setattr(train, "probe_stacked", fail)  # the engine's name for it
    loop = _run("runtime.batch_seeds=false")
    auto = _run()
    assert auto.info["seed_batching"].startswith("loop (vmap failed: RuntimeError")
    assert auto.rows == loop.rows
    with pytest.raises(RuntimeError, match="vmap cannot run"):
        _run("runtime.batch_seeds=true")


def test_probing_stacked_models_leaves_them_unchanged():
    cfg = _cfg("norm=bn_torch")
    models = [train.make_model(cfg, 12, 10, s).train() for s in (0, 1)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    x = torch.randn(2, 12, 12, dtype=torch.float64)
    y = torch.randint(0, 10, (2, 12))
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    stacked.probe_stacked(stacked.stack(models), x, y, spec)
    for model, state in zip(models, before):
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------------ probe options


def _model_and_data(cfg, seed):
    dtype = DTYPES[cfg.dtype]
    x_train, y_train, *_ = data.make_dataset(cfg.data, seed, "cpu", dtype)
    return train.make_model(cfg, x_train[0].numel(), cfg.data.n_classes, seed, "cpu", dtype).train(), x_train, y_train


@pytest.mark.parametrize("batch_seeds", ["true", "false"])
def test_probe_batches_are_consecutive_chunks_with_one_network(batch_seeds):
    overrides = ["probe.batches=3", "probe.metrics=[soft_rank]", "probe.weight_metrics=[isometry_gap]",
                 f"runtime.batch_seeds={batch_seeds}", "n_seeds=2"]
    cfg = _cfg(*overrides)
    writer = FakeWriter()
    train.run(cfg, writer)
    assert {r[1] for r in writer.rows} == {0, 1, 2}
    assert {r[1] for r in writer.rows if r[3].startswith("weight_")} == {0}  # the same network: once
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    for seed in (7, 8):
        model, x_train, y_train = _model_and_data(cfg, seed)
        for b in range(3):
            chunk = slice(12 * b, 12 * (b + 1))
            items = probe.probe(model, x_train[chunk], y_train[chunk], spec, weights=False)
            expected = probe.values_to_rows(items, seed, b)
            got = [r for r in writer.rows if r[0] == seed and r[1] == b and not r[3].startswith("weight_")]
            assert_same_rows(got, expected)


def test_probe_input_is_layer_minus_one():
    cfg = _cfg("probe.input=true", "probe.metrics=[soft_rank,isometry_gap]", "data.dim=20")
    writer = FakeWriter()
    train.run(cfg, writer)
    _, x_train, _ = _model_and_data(cfg, 7)
    expected = metrics.measure(x_train[:12], ["soft_rank", "isometry_gap"])
    for name in ("soft_rank", "isometry_gap"):
        got = [r[4] for r in writer.rows if r[0] == 7 and r[2] == -1 and r[3] == name]
        assert got == [pytest.approx(expected[name].item(), rel=1e-12)]
    assert sorted({r[2] for r in writer.rows if r[3] == "soft_rank"}) == [-1, 0, 1, 2, 3, 4]


def _phi_numpy(w: np.ndarray) -> float:
    """ln(AM/GM) of the eigenvalues of W Wᵀ, independently in numpy."""
    lam = np.linalg.eigvalsh(w @ w.T)
    return float(np.log(lam.mean()) - np.log(lam).mean())


@pytest.mark.parametrize("init", ["orthogonal", "xavier_normal"])
def test_weight_isometry_gap(init):
    # d_in = 24 > width = 16: fc_0 (16 × 24) has orthonormal rows under orthogonal init, as every square
    # W_ℓ and the readout (10 × 16): φ(W Wᵀ) = 0 for all of them. Gaussian weights: φ > 0.
    cfg = _cfg(f"init={init}", "data.dim=24", "probe.weight_metrics=[isometry_gap]", "probe.metrics=[]")
    writer = FakeWriter()
    train.run(cfg, writer)
    model, *_ = _model_and_data(cfg, 7)
    got = {r[2]: r[4] for r in writer.rows if r[0] == 7 and r[3] == "weight_isometry_gap"}
    assert sorted(got) == list(range(6))  # fc_0 … fc_4, readout
    for k, layer in enumerate(model.weight_layers()):
        w = layer.weight.detach().numpy()
        expected = _phi_numpy(w)
        assert got[k] == pytest.approx(metrics.isometry_gap(layer.weight).item(), rel=1e-12, abs=1e-15)
        if init == "orthogonal":
            assert got[k] < 1e-12 and abs(expected) < 1e-12
        else:
            assert got[k] > 0.05 and got[k] == pytest.approx(expected, rel=1e-8)


def test_weight_metrics_are_measured_every_epoch_when_training():
    writer = _run("optim.epochs=2", "dtype=float32", "n_seeds=1", "probe.weight_metrics=[isometry_gap]")
    steps = {r[1] for r in writer.rows if r[3] == "weight_isometry_gap"}
    assert steps == {0, 1, 2}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("probe.batches=0", "probe.batches"),
        ("probe.batches=6", "probe.batches"),  # 6 · 12 > n_train = 64
        ("probe.input=yes", "probe.input"),
        ("probe.weight_metrics=[rank_foo]", "probe.weight_metrics"),
        ("probe.weight_metrics=isometry_gap", "probe.weight_metrics"),
        ("runtime.batch_seeds=sometimes", "runtime.batch_seeds"),
    ],
)
def test_validation_names_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        train.validate(_cfg(override))
    assert err.value.key == key and str(err.value).startswith(key)


def test_several_probe_batches_only_at_init():
    with pytest.raises(ConfigError, match=r"^probe\.batches"):
        train.validate(_cfg("probe.batches=2", "optim.epochs=1"))


# ------------------------------------------------------------------------------------------------ one assembly

# Every metric the single-model probe can write, with every option on: each representation metric (hidden layers,
# the input as layer −1, and weight_<metric>) and the whole-network ones (loss, grad_norm, the alignment).
ALL_METRICS = sorted(metrics.MEASURES)
EVERYTHING = [f"probe.metrics=[{','.join(ALL_METRICS)}]", f"probe.weight_metrics=[{','.join(ALL_METRICS)}]",
              "probe.top_k=3", "probe.input=true", "probe.alignment=true", "probe.alignment_samples=8",
              "probe.grad_norms=true"]


# item name → the metric that writes it (top_eigenvalues: eig_1 … eig_k, regularity_terms: two)
WRITTEN_BY = {item: name for name in ALL_METRICS
              for item in metrics.measure(torch.randn(6, 8, dtype=torch.float64), [name], k=3)}


def _base(item_name: str) -> str:
    name = item_name.removeprefix("weight_")
    return WRITTEN_BY.get(name, name)


@pytest.fixture(scope="module", params=["bn_torch", "none", "bn_torch mse"])
def both_paths(request):
    """Rows of ``probe.probe`` per seed and of ``probe_stacked`` of the same models, every option on (and the
    squared-error loss of ``optim.loss=mse``)."""
    norm, *loss = request.param.split()
    cfg = _cfg(*EVERYTHING, f"norm={norm}", "act=tanh")
    spec = dataclasses.replace(probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth), loss=(loss or ["ce"])[0])
    seeds, single, batches = [7, 8, 9], [], []
    for seed in seeds:
        model, x_train, y_train = _model_and_data(cfg, seed)
        single += probe.values_to_rows(probe.probe(model, x_train[:12], y_train[:12], spec), seed, 0)
        batches.append((model, x_train[:12], y_train[:12]))
    st = stacked.stack([model for model, _, _ in batches])
    x, y = torch.stack([b[1] for b in batches]), torch.stack([b[2] for b in batches])
    found = stacked.probe_stacked(st, x, y, spec)
    rows = [row for r, seed in enumerate(seeds) for row in probe.values_to_rows(found[r], seed, 0)]
    return single, rows


def test_the_parametrisation_covers_every_metric_of_the_single_probe(both_paths):
    single, _ = both_paths
    assert {_base(r[3]) for r in single} == {*ALL_METRICS, *probe.WHOLE_NETWORK}


@pytest.mark.parametrize("name", [*ALL_METRICS, *probe.WHOLE_NETWORK])
def test_stacked_probe_gives_every_metric_of_the_single_probe(both_paths, name):
    single, stacked_rows = both_paths
    expected = [r for r in single if _base(r[3]) == name]
    assert expected, f"the single probe wrote no {name}"
    assert_same_rows([r for r in stacked_rows if _base(r[3]) == name], expected)
    assert_same_rows(stacked_rows, single)  # and the whole rows, in the same order

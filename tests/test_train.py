"""The network engine and its probe: row schema, metrics and gradient norms against manual computations,
probing that leaves the model untouched, rank collapse at init, SGD, reproducibility and validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnexp import config, data, engines, metrics, probe, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MLP
from bnexp.runtime import DTYPES

SMALL = ["model.depth=3", "model.width=16", "data.dim=8", "data.n_train=64", "data.n_test=16",
         "data.batch_size=12", "runtime.progress=false"]


FakeWriter = results.MemoryWriter


def _cfg(*overrides: str):
    return config.compose("train", [*SMALL, *overrides])


def _run(*overrides: str) -> FakeWriter:
    writer = FakeWriter()
    train.run(_cfg(*overrides), writer)
    return writer


def _values(rows, metric, *, seed=0, step=0) -> dict:
    return {r[2]: r[4] for r in rows if r[3] == metric and r[0] == seed and r[1] == step}


def _model_and_batch(cfg, seed=0):
    dtype = DTYPES[cfg.dtype]
    x_train, y_train, *_ = data.make_dataset(cfg.data, seed, "cpu", dtype)
    model = train.make_model(cfg, x_train.shape[1], cfg.data.n_classes, seed, "cpu", dtype).train()
    return model, *data.probe_batch(x_train, y_train, cfg.data.batch_size)


# ------------------------------------------------------------------------------------------------ epochs = 0


def test_init_rows_have_the_schema(outputs):
    cfg = _cfg("n_seeds=2", "seed=4", "probe.metrics=[rank_torch,soft_rank,top_eigenvalues]", "probe.top_k=3")
    directory, outcome = results.execute(cfg, train.run)
    assert outcome == "done" and results.read_status(directory)["status"] == "done"
    assert results.read_status(directory)["dtype"] == "float64"
    df = results.read_metrics(directory)
    assert list(df.columns) == list(results.COLUMNS)
    assert set(df.seed) == {4, 5} and set(df.step) == {0}
    per_layer = ["rank_torch", "soft_rank", "eig_1", "eig_2", "eig_3"]
    for seed in (4, 5):
        rows = df[df.seed == seed]
        for name in per_layer:  # hidden layers 0..2
            assert sorted(rows[rows.metric == name].layer) == [0, 1, 2]
        assert sorted(rows[rows.metric == "grad_norm"].layer) == [0, 1, 2, 3]  # fc_0, fc_1, fc_2, readout
        loss = rows[rows.metric == "loss"]
        assert len(loss) == 1 and loss.layer.isna().all()
        assert len(rows) == 3 * len(per_layer) + 4 + 1
    assert np.isfinite(df.value).all()
    assert (df[df.metric == "rank_torch"].value <= 12).all()  # n = 12 < d = 16


def test_residual_mlp_rows():
    # weight layers of ResidualMLP: [fc_in, W_0, ..., W_{depth-1}, readout] → grad_norm layers 0..depth+1
    writer = _run("model=resmlp", "model.depth=3", "norm=bn_theory", "probe.metrics=[soft_rank]")
    assert sorted(_values(writer.rows, "soft_rank")) == [0, 1, 2]
    assert sorted(_values(writer.rows, "grad_norm")) == [0, 1, 2, 3, 4]
    assert all(np.isfinite(r[4]) for r in writer.rows)


@pytest.mark.parametrize("point", ["pre", "norm", "post"])
def test_layer_metrics_equal_measure_on_a_manual_forward(point):
    names = ["rank_torch", "soft_rank", "rank_lower_bound", "mean_abs_cosine"]
    cfg = _cfg(f"probe.point={point}", f"probe.metrics=[{','.join(names)}]", "probe.tau=0.3")
    writer = FakeWriter()
    train.run(cfg, writer)
    model, x, _ = _model_and_batch(cfg)
    h = x
    for l, fc in enumerate(model.fc):  # Linear → BatchNorm1d (train mode, γ=1, β=0) → ReLU, by hand
        pre = h @ fc.weight.detach().T + fc.bias.detach()
        var, mean = torch.var_mean(pre, 0, correction=0)
        normed = (pre - mean) / torch.sqrt(var + 1e-5)
        h = torch.relu(normed)
        expected = metrics.measure({"pre": pre, "norm": normed, "post": h}[point], names, tau=0.3)
        for name in names:
            got = _values(writer.rows, name)[l]
            torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), expected[name], rtol=1e-9, atol=0)


def test_layer_selection_and_representations():
    cfg = _cfg("model.depth=5", "probe.layers=[3,1]", "probe.metrics=[rank_lower_bound]")
    writer = FakeWriter()
    train.run(cfg, writer)
    assert sorted(_values(writer.rows, "rank_lower_bound")) == [1, 3]
    model, x, _ = _model_and_batch(cfg)
    reps = probe.representations(model, x, "pre", [3, 1])
    assert [l for l, _ in reps] == [1, 3] and reps[0][1].shape == (12, 16)
    _, features = model.forward_features(x)
    torch.testing.assert_close(reps[1][1], features[3]["pre"], rtol=0, atol=0)
    assert [l for l, _ in probe.representations(model, x, "post", "last")] == [4]


def test_grad_norms_equal_manual_autograd_in_float64():
    cfg = _cfg("n_seeds=2", "norm=bn_torch", "act=tanh")
    writer = FakeWriter()
    train.run(cfg, writer)
    for seed in (0, 1):
        model, x, y = _model_and_batch(cfg, seed)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        expected = [np.linalg.norm(m.weight.grad.numpy().astype(np.float64)) for m in model.weight_layers()]
        got = _values(writer.rows, "grad_norm", seed=seed)
        assert sorted(got) == list(range(len(expected)))
        np.testing.assert_allclose([got[k] for k in range(len(expected))], expected, rtol=1e-12)
        assert _values(writer.rows, "loss", seed=seed)[None] == pytest.approx(loss.item(), rel=1e-12)


def test_grad_norms_are_finite_where_float32_squares_overflow():
    # Vanilla linear net with weights ~ N(0, 100²): gradient entries ~1e21, finite in float32, but their
    # squares (~1e42) overflow float32's 3.4e38 — the norm must be accumulated in float64.
    cfg = _cfg("model.depth=8", "model.width=32", "data.dim=32", "data.batch_size=32", "norm=none",
               "act=linear", "init=std_gauss", "init.gain=100", "dtype=float32")
    writer = FakeWriter()
    train.run(cfg, writer)
    model, x, y = _model_and_batch(cfg)
    F.cross_entropy(model(x), y).backward()
    grads = [m.weight.grad for m in model.weight_layers()]
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.isinf(grads[0].square().sum())  # the float32 squared norm overflows
    expected = [np.linalg.norm(g.numpy().astype(np.float64)) for g in grads]
    got = _values(writer.rows, "grad_norm")
    np.testing.assert_allclose([got[k] for k in range(len(grads))], expected, rtol=1e-12)
    assert min(got.values()) > 1e19 and all(np.isfinite(list(got.values())))


def test_grad_norms_record_inf_and_nan_without_raising():
    model = MLP(4, 5, 2, 3, norm="none", act="linear").double()
    w0, w1, _ = (m.weight for m in model.weight_layers())
    norms = probe.grad_norms(model, w0.sum() * float("inf") + w1.sum())  # ∂/∂W_0 = inf, W_2 unused
    assert torch.isinf(norms[0]) and norms[1] == pytest.approx(np.sqrt(25)) and norms[2] == 0
    with torch.no_grad():
        w1[0, 0] = float("nan")
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.zeros(6, dtype=torch.long)
    assert torch.isnan(probe.grad_norms(model, F.cross_entropy(model(x), y))).all()


@pytest.mark.parametrize("norm", ["bn_torch", "bn_nocenter"])
def test_probing_never_changes_the_model(norm):
    cfg = _cfg(f"norm={norm}", "probe.metrics=[rank_torch,soft_rank]")
    model, x, y = _model_and_batch(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    probe.probe(model, x, y, spec)
    probe.representations(model, x, "norm")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters()) and model.training
    model(x)  # the check is meaningful: a plain train-mode forward does move the running statistics
    assert not all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_vanilla_rank_collapses_with_depth_while_bn_keeps_it():
    # rank/fig1 left at init (the init_depth experiment: width 128, batch 128, float32, torch_default).
    # rank Fig 1 (calibrated): vanilla rank_torch(hl=0) >= 120 and == 1 for hl >= 16;
    # BN 128 at every depth. Here depth = hl + 1. Measured: vanilla 128 at depth 1, 1 at depth 16 and 17.
    ranks = {}
    for norm in ("none", "bn_torch"):
        for depth in (1, 17):
            cfg = config.compose("train", ["+exp=init_depth", f"norm={norm}", f"model.depth={depth}", "n_seeds=2",
                                           "probe.layers=last", "probe.metrics=[rank_torch]",
                                           "probe.grad_norms=false", "runtime.progress=false"])
            writer = FakeWriter()
            train.run(cfg, writer)
            ranks[norm, depth] = [r[4] for r in writer.rows if r[3] == "rank_torch"]
    assert min(ranks["none", 1]) >= 120
    assert ranks["none", 17] == [1.0, 1.0]
    assert ranks["bn_torch", 1] == ranks["bn_torch", 17] == [128.0, 128.0]


def test_init_depth_experiment_grid_composes_and_runs(outputs):
    grid = config.experiment_grid("init_depth")
    assert grid == {"norm": ["bn_torch", "none"], "model.depth": ["2", "4", "8", "16", "32"]}
    runs = config.expand_grid(grid)
    cfgs = [config.compose("train", ["+exp=init_depth", *overrides]) for overrides in runs]
    for cfg in cfgs:
        engines.validate(cfg)
    assert {(c.norm.name, c.model.depth) for c in cfgs} == {(n, d) for n in ("bn_torch", "none")
                                                             for d in (2, 4, 8, 16, 32)}
    cfg = cfgs[0]
    assert (cfg.optim.epochs, cfg.model.width, cfg.data.batch_size, cfg.n_seeds) == (0, 128, 128, 5)
    smoke = config.compose("train", ["+exp=init_depth", "model.depth=2", "n_seeds=1", "runtime.progress=false"])
    directory, _ = results.execute(smoke, train.run)
    df = results.load("init_depth")
    assert set(df.metric) == {"rank_torch", "soft_rank", "rank_lower_bound", "grad_norm", "loss"}
    assert (df["model.depth"] == 2).all() and directory.parent.name == "init_depth"


# ------------------------------------------------------------------------------------------------ training


def test_sgd_reduces_the_loss_and_the_csv_is_reproducible(outputs):
    cfg = config.compose("train", ["model.depth=2", "model.width=64", "optim.lr=0.1", "optim.epochs=3",
                                   "dtype=float32", "runtime.progress=false"])
    directory, _ = results.execute(cfg, train.run)
    first = (directory / "metrics.csv").read_bytes()
    results.execute(cfg, train.run, force=True)
    assert (directory / "metrics.csv").read_bytes() == first
    other = config.compose("train", ["model.depth=2", "model.width=64", "optim.lr=0.1", "optim.epochs=3",
                                     "dtype=float32", "runtime.progress=false", "seed=1"])
    other_dir, _ = results.execute(other, train.run)
    assert (other_dir / "metrics.csv").read_bytes() != first

    df = results.read_metrics(directory)
    assert set(df.step) == {0, 1, 2, 3}
    for step in range(4):
        at = df[df.step == step]
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "loss", "grad_norm", "rank_torch"} <= set(at.metric)
    curve = df[df.metric == "train_loss"].sort_values("step").value.to_numpy()
    # measured: 2.31 → 2.06 → 1.47 → 1.04 (chance level is ln 10 = 2.30)
    assert curve[0] > 2.0 and curve[3] < 0.6 * curve[0] and np.all(np.diff(curve) < 0)
    test_acc = df[df.metric == "test_acc"].sort_values("step").value.to_numpy()
    assert test_acc[3] > 0.4 > test_acc[0]  # chance 0.1; measured 0.105 → 0.656


def test_probing_does_not_perturb_training():
    base = ["optim.epochs=2", "optim.lr=0.1", "dtype=float32"]
    full = _run(*base, "probe.metrics=[rank_torch,soft_rank]", "probe.grad_norms=true")
    lean = _run(*base, "probe.metrics=[rank_lower_bound]", "probe.layers=last", "probe.grad_norms=false")
    for name in ("train_loss", "train_acc", "test_loss", "test_acc", "loss"):
        for step in range(3):
            assert _values(full.rows, name, step=step) == _values(lean.rows, name, step=step)


def test_threads_setting():
    assert train.choose_threads("auto", 128) == 1
    assert train.choose_threads("auto", 1024) == max(1, torch.get_num_threads() - 1)  # a core left free
    assert train.choose_threads("auto", None) == max(1, torch.get_num_threads() - 1)  # conv nets: no width
    assert train.choose_threads(3, 16) == 3
    with pytest.raises(ConfigError, match=r"runtime\.threads"):
        train.choose_threads(0, 16)
    before = torch.get_num_threads()
    writer = _run("runtime.threads=2")
    assert writer.info["threads"] == 2 and torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("override", "key", "mentions"),
    [
        ("model.depth=0", "model.depth", "≥ 1"),
        ("model.width=0", "model.width", "≥ 1"),
        ("data.batch_size=0", "data.batch_size", "≥ 1"),
        ("probe.tau=1.5", "probe.tau", "[0, 1]"),
        ("probe.metrics=[rank_foo]", "probe.metrics", "rank_torch"),
        ("probe.point=middle", "probe.point", "post"),
        ("probe.layers=[0,3]", "probe.layers", "[0, 3)"),
        ("optim.epochs=-1", "optim.epochs", "≥ 0"),
        ("optim.lr=0", "optim.lr", "> 0"),
        ("norm.name=bn_foo", "norm.name", "bn_torch"),
        ("act.name=gelu", "act.name", "relu"),
        ("init.name=kaiming", "init.name", "torch_default"),
        ("model.name=alexnet", "model.name", "mlp"),
        ("data.name=imagenet", "data.name", "gaussian"),
    ],
)
def test_validation_names_the_key(override, key, mentions):
    cfg = _cfg(override)
    with pytest.raises(ConfigError) as err:
        train.validate(cfg)
    assert err.value.key == key and str(err.value).startswith(key) and mentions in str(err.value)
    writer = FakeWriter()
    with pytest.raises(ConfigError):
        train.run(cfg, writer)
    assert writer.rows == [] and writer.info == {}  # nothing done before the error


def test_validation_single_sample_last_minibatch_with_bn():
    bad = ["data.n_train=61", "optim.epochs=1"]  # 61 = 5·12 + 1
    with pytest.raises(ConfigError, match=r"^data\.drop_last"):
        train.validate(_cfg(*bad))
    train.validate(_cfg(*bad, "norm=none"))
    train.validate(_cfg(*bad, "norm=layernorm"))  # a per-sample norm normalises one sample
    writer = _run(*bad, "data.drop_last=true")
    assert set(_values(writer.rows, "train_loss", step=1)) == {None}


@pytest.mark.parametrize("norm", ["bn_torch", "bn_center", "bn_theory", "bn_nocenter", "bn_detach_var"])
def test_validation_batch_of_one_sample_with_a_batch_norm(norm):
    with pytest.raises(ConfigError, match=rf"^data\.batch_size=1 .*norm={norm}"):
        train.validate(_cfg(f"norm={norm}", "data.batch_size=1", "optim.epochs=0"))
    for per_sample in ("none", "layernorm", "rmsnorm", "weightnorm"):
        train.validate(_cfg(f"norm={per_sample}", "data.batch_size=1", "optim.epochs=0"))


def test_validation_batch_larger_than_width_for_isometry_gap():
    cfg = _cfg("probe.metrics=[rank_torch,isometry_gap]", "data.batch_size=17")  # width 16
    with pytest.raises(ConfigError, match=r"^data\.batch_size=17.*isometry_gap"):
        engines.validate(cfg)
    engines.validate(_cfg("probe.metrics=[rank_torch,isometry_gap]", "data.batch_size=16"))
    engines.validate(_cfg("probe.metrics=[rank_torch]", "data.batch_size=17"))  # only φ needs n <= d

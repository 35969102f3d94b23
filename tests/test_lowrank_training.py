"""The training features of the low-rank paper (Galanti & Poggio; spec ../shared/specs/lowrank.md §1.2–1.6, M1–M7):
the RES-(BN-)L-H model and MLP-BN-L-H against manual compositions, the MSE loss, the weight-decay conventions,
the weight-rank rows (oracles in numpy float64), the collapse rule, divergence, the spectra files and resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnexp import config, data, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.metrics import weights as wm
from bnexp.nn import build_model
from bnexp.probe import ProbeSpec
from bnexp.results import spectra as spectra_files
from bnexp.runtime import DTYPES
from bnexp.training import checkpoint, measures, optim
from bnexp.training.loop import Trainer

SMALL = ["model.depth=3", "model.width=16", "data.dim=8", "data.n_train=64", "data.n_test=16",
         "data.batch_size=12", "runtime.progress=false", "probe.metrics=[rank_lower_bound]"]
RANKS = ["+probe.weight_ranks=true", "+probe.spectra=true", "+probe.train_pass=true"]


def _cfg(*overrides: str):
    return config.compose("train", [*SMALL, *overrides])


def _rows(directory) -> list[tuple]:
    return [tuple(r) for r in results.read_metrics(directory).itertuples(index=False)]


def _blank(layer) -> bool:
    return layer is None or (isinstance(layer, float) and math.isnan(layer))


def _value(rows, metric, step, layer=None, seed=0) -> float:
    """The one value of ``metric`` at ``step`` (``layer`` None: the whole-network row)."""
    found = [r[4] for r in rows if r[3] == metric and r[1] == step and r[0] == seed
             and (_blank(r[2]) if layer is None else r[2] == layer)]
    assert len(found) == 1, (metric, step, layer, found)
    return found[0]


def _np_rank(w: np.ndarray, eps: float) -> int:
    """The oracle of spec M1: numpy float64 SVD of W/‖W‖_F, singular values > ε."""
    w = np.asarray(w, dtype=np.float64)
    return int((np.linalg.svd(w / np.linalg.norm(w), compute_uv=False) > eps).sum())


# ------------------------------------------------------------------------------------------------ models


def test_resblock_structure_and_forward_is_the_papers_block():
    torch.manual_seed(0)
    model = build_model("resblock", d_in=12, width=8, depth=3, d_out=4, norm="bn_torch", act="relu").double()
    layers = model.weight_layers()
    assert layers[0] is model.stem and layers[-1] is model.readout
    assert layers[1:-1] == [lin for b in model.blocks for lin in (b.W1, b.W2)]
    assert [tuple(m.weight.shape) for m in layers] == [(8, 12), *[(8, 8)] * 6, (4, 8)]
    assert all(m.bias is not None for m in layers)  # biases on
    ids = {id(m.weight) for m in layers}
    assert len(ids) == len(layers)  # independent blocks (the reference code's shared block is not copied)
    x = torch.randn(16, 12, dtype=torch.float64)

    def bn(h):  # train-mode BN, γ = 1, β = 0 at init, eps 1e-5, biased variance
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)

    z = x @ model.stem.weight.T + model.stem.bias  # stem: no norm, no activation
    for b in model.blocks:
        a = torch.relu(bn(z @ b.W1.weight.T + b.W1.bias))
        z = z + torch.relu(bn(a @ b.W2.weight.T + b.W2.bias))  # ReLU after n2, before the addition
    expected = z @ model.readout.weight.T + model.readout.bias
    out, feats = model.forward_features(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert len(feats) == 3
    torch.testing.assert_close(feats[-1]["post"], z, rtol=1e-12, atol=1e-12)

    plain = build_model("resblock", d_in=12, width=8, depth=2, d_out=4, norm="none", act="relu").double()
    z = x @ plain.stem.weight.T + plain.stem.bias
    for b in plain.blocks:
        z = z + torch.relu(b.W2(torch.relu(b.W1(z))))
    torch.testing.assert_close(plain(x), plain.readout(z), rtol=1e-12, atol=1e-12)


def test_resblock_config_composes_and_uses_pytorch_default_init():
    cfg = _cfg("model=resblock", "model.depth=2", "init=torch_default")
    model = train.make_model(cfg, 8, 10, 0)
    assert type(model).__name__ == "ResBlockMLP" and len(model.weight_layers()) == 2 * 2 + 2
    for m in model.weight_layers():  # U(−1/√fan_in, 1/√fan_in) for weights and biases
        bound = 1 / math.sqrt(m.in_features)
        assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound


def test_mlp_bn_is_linear_bn_relu_then_a_linear_readout():
    """MLP-BN-L-H of spec §1.2 is model=mlp, norm=bn_torch, act=relu, init=torch_default, order=norm_act."""
    cfg = _cfg("model=mlp", "norm=bn_torch", "act=relu", "init=torch_default")
    assert cfg.model.order == "norm_act" and cfg.model.bias is True and cfg.model.gain == 1.0
    model = train.make_model(cfg, 8, 10, 0)
    x = torch.randn(20, 8, dtype=torch.float64)
    h = x
    for fc in model.fc:
        z = h @ fc.weight.T + fc.bias
        h = torch.relu((z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5))
    torch.testing.assert_close(model(x), h @ model.readout.weight.T + model.readout.bias, rtol=1e-12, atol=1e-12)
    assert [tuple(m.weight.shape) for m in model.weight_layers()] == [(16, 8), (16, 16), (16, 16), (10, 16)]


# ------------------------------------------------------------------------------------------------ loss and decay


def test_mse_loss_is_the_mean_over_batch_and_classes_against_one_hot():
    logits, y = torch.randn(7, 10, dtype=torch.float64), torch.arange(7) % 10
    expected = F.mse_loss(logits, F.one_hot(y, 10).double())
    torch.testing.assert_close(optim.loss_of("mse", logits, y), expected)
    torch.testing.assert_close(optim.loss_of("mse", logits, y, "sum"), expected * 7)
    torch.testing.assert_close(optim.loss_of("ce", logits, y), F.cross_entropy(logits, y))


def test_mse_training_follows_a_plain_torch_loop():
    cfg = _cfg("optim.epochs=1", "optim.lr=0.05", "+optim.loss=mse", "norm=none")
    writer = results.MemoryWriter()
    train.run(cfg, writer)
    x, y, x_test, y_test = data.make_dataset(cfg.data, 0, "cpu", torch.float64)
    model = train.make_model(cfg, x.shape[1], 10, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(data.derive_seed(0, "shuffle"))
    total = 0.0
    for idx in torch.randperm(len(x), generator=gen).split(12):
        loss = F.mse_loss(model(x[idx]), F.one_hot(y[idx], 10).double())
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    rows = writer.rows
    assert _value(rows, "train_loss", 1) == pytest.approx(total / len(x), rel=1e-12)
    with torch.no_grad():
        test = F.mse_loss(model.eval()(x_test), F.one_hot(y_test, 10).double()).item()
    assert _value(rows, "test_loss", 1) == pytest.approx(test, rel=1e-12)


@pytest.mark.parametrize(("convention", "on"), [("torch", "all"), ("paper", "all"), ("paper", "weights_only"),
                                                ("torch", "weights_only")])
def test_weight_decay_conventions_give_the_documented_gradient(convention, on):
    lam, lr = 0.01, 0.5
    spec = optim.OptimSpec.from_cfg(config.compose("train", [f"optim.weight_decay={lam}",
                                                             f"+optim.wd_convention={convention}",
                                                             f"+optim.wd_on={on}"]).optim)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = optim.make_optimizer(spec, model.parameters(), lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # the step is the weight decay alone
    opt.step()
    factor = 2 * lam if convention == "paper" else lam  # the gradient is factor · W
    for name, p in model.named_parameters():
        decayed = p.dim() >= 2 or on == "all"
        expected = before[name] * (1 - lr * factor) if decayed else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0)


def test_new_keys_are_validated_with_their_names():
    for override, key in [("+optim.loss=hinge", "optim.loss"), ("+optim.wd_convention=keras", "optim.wd_convention"),
                          ("+optim.wd_on=biases", "optim.wd_on")]:
        with pytest.raises(ConfigError) as err:
            train.validate(_cfg("optim.epochs=1", override))
        assert err.value.key == key
    for overrides, key in [(["optim.epochs=1", "+probe.rank_eps=0"], "probe.rank_eps"),
                           (["optim.epochs=1", "+probe.zero_rtol=-1"], "probe.zero_rtol"),
                           (["optim.epochs=1", "+probe.spectra=true"], "probe.spectra"),
                           (["optim.epochs=1", "+probe.weight_ranks=yes"], "probe.weight_ranks"),
                           (["+probe.weight_ranks=true"], "probe.weight_ranks"),
                           (["+probe.train_pass=true"], "probe.train_pass"),
                           (["optim.epochs=1", *RANKS[:2], "optim.lr_grid=[0.1,0.2]"], "probe.spectra")]:
        with pytest.raises(ConfigError) as err:
            train.validate(_cfg(*overrides))
        assert err.value.key == key, overrides


# ------------------------------------------------------------------------------------------------ weight ranks


def test_normalized_rank_against_numpy_float64():
    rng = np.random.default_rng(0)
    for shape, planted in [((30, 20), [1.0, 0.5, 0.2, 5e-4, 5e-5, 1e-9]), ((8, 40), [3.0, 2e-4, 1e-3]),
                           ((10, 10), [1.0] * 10)]:
        u, _ = np.linalg.qr(rng.standard_normal((shape[0], shape[0])))
        v, _ = np.linalg.qr(rng.standard_normal((shape[1], shape[1])))
        s = np.zeros(min(shape))
        s[: len(planted)] = planted
        w = (u[:, : len(s)] * s) @ v[:, : len(s)].T
        sv = wm.weight_spectra([torch.tensor(w)])[0]
        np.testing.assert_allclose(sv.numpy(), np.linalg.svd(w, compute_uv=False), atol=1e-12)
        for eps in (1e-4, 1e-3, 1e-2):
            assert wm.normalized_rank(sv, eps).item() == _np_rank(w, eps)
    assert wm.normalized_rank(torch.zeros(5, dtype=torch.float64)).item() == 0  # W ≡ 0
    zero_rule = wm.weight_rank(torch.tensor([1e-6, 1e-7], dtype=torch.float64), torch.tensor(1.0), 1e-4, 1e-4)
    assert zero_rule.item() == 0  # ‖W_t‖_F ≤ 1e-4·‖W_0‖_F
    assert wm.weight_rank(torch.tensor([1e-3, 1e-4]), torch.tensor(1.0), 1e-4, 1e-4).item() == 2


def test_spectra_are_batched_by_shape_and_never_decompose_a_non_finite_matrix(monkeypatch):
    calls = []
    original = torch.linalg.svdvals

    def svdvals(a):
        assert torch.isfinite(a).all()
        calls.append(tuple(a.shape))
        return original(a)

    monkeypatch.setattr(torch.linalg, "svdvals", svdvals)
    ws = [torch.randn(5, 3), torch.randn(4, 4), torch.randn(5, 3), torch.randn(4, 4), torch.randn(2, 4)]
    ws[3][1, 2] = math.nan
    sv = wm.weight_spectra(ws)
    assert sorted(calls) == [(1, 2, 4), (2, 4, 4), (2, 5, 3)]  # one call per shape
    assert torch.isnan(sv[3]).all() and torch.isfinite(sv[1]).all()
    assert math.isnan(wm.normalized_rank(sv[3]).item())
    for w, s in zip([ws[0], ws[1], ws[2], ws[4]], [sv[0], sv[1], sv[2], sv[4]]):
        np.testing.assert_allclose(s.numpy(), np.linalg.svd(w.double().numpy(), compute_uv=False), rtol=1e-12)


def _trainer(cfg):
    device, dtype = torch.device("cpu"), DTYPES[cfg.dtype]
    networks = train.Networks(cfg, device, dtype, "off")
    split = data.make_dataset(cfg.data, 0, device, dtype)
    d_in = split[0][0].numel()
    spec = ProbeSpec.from_cfg(cfg.probe, train.feature_layers(cfg))
    return Trainer(networks.model(0, d_in), split, networks.probe_batch(*split[:2]), seed=0, lr=cfg.optim.lr,
                   optim=optim.OptimSpec.from_cfg(cfg.optim, cfg.data), spec=spec, batch_size=12)


def test_weight_rank_rows_against_oracles_on_a_run_with_known_structure():
    """data.dim = 3 < width: the stem W_0 (16×3) has rank 3; a planted rank-2 block matrix keeps rank 2 up to
    the first update; every row is checked against numpy on the trainer's own weights."""
    cfg = _cfg("data.dim=3", "optim.epochs=2", "optim.lr=0.05", "+probe.weight_ranks=true", "norm=none")
    trainer = _trainer(cfg)
    with torch.no_grad():
        w = trainer.model.fc[1].weight
        w.copy_(w[:, :2] @ w[:2, :])  # rank 2
    weights0 = [m.weight.detach().double().numpy().copy() for m in trainer.model.weight_layers()]
    start = trainer.initial_rows()
    assert [r[3] for r in start][-7:] == ["weight_fro"] * 4 + ["avg_rank", "mean_weight_norm", "diverged"]
    ranks0 = [_value(start, "weight_rank", 0, k) for k in range(4)]
    assert ranks0 == [_np_rank(w, 1e-4) for w in weights0] and ranks0[:2] == [3, 2]
    assert _value(start, "avg_rank", 0) == pytest.approx(np.mean(ranks0[:3]))  # readout excluded
    norms0 = [np.linalg.norm(w) for w in weights0]
    assert [_value(start, "weight_fro", 0, k) for k in range(4)] == pytest.approx(norms0, rel=1e-12)
    assert _value(start, "mean_weight_norm", 0) == pytest.approx(np.mean(norms0), rel=1e-12)
    assert _value(start, "diverged", 0) == 0.0 and not any(r[3] == "weight_distance" for r in start)

    logged: list = []
    trainer.train_epoch(logged.extend)
    weights1 = [m.weight.detach().double().numpy().copy() for m in trainer.model.weight_layers()]
    assert [_value(logged, "weight_rank", 1, k) for k in range(4)] == [_np_rank(w, 1e-4) for w in weights1]
    distance = np.mean([np.linalg.norm(a - b) for a, b in zip(weights1, weights0)])
    assert _value(logged, "weight_distance", 1) == pytest.approx(distance, rel=1e-9)
    assert logged[-1][3] == "diverged" and logged[-2][3] == "weight_distance"

    included = _cfg("data.dim=3", "optim.epochs=1", "+probe.weight_ranks=true", "+probe.rank_include_output=true")
    rows = _trainer(included).initial_rows()
    assert _value(rows, "avg_rank", 0) == pytest.approx(np.mean([_value(rows, "weight_rank", 0, k)
                                                                 for k in range(4)]))


def test_train_pass_rows_are_an_eval_mode_pass_over_the_training_set():
    cfg = _cfg("optim.epochs=1", "+probe.train_pass=true")
    trainer = _trainer(cfg)
    logged: list = []
    trainer.train_epoch(logged.extend)
    loss, acc = measures.evaluate(trainer.model, trainer.x_train, trainer.y_train, 12)
    assert _value(logged, "train_full_loss", 1) == pytest.approx(loss.item(), rel=1e-12)
    assert _value(logged, "train_full_acc", 1) == pytest.approx(acc.item(), rel=1e-12)
    assert _value(logged, "train_loss", 1) != _value(logged, "train_full_loss", 1)  # running mean stays


def test_a_collapsed_network_has_rank_zero_under_the_zero_rtol_rule():
    """Huge weight decay drives a network without BN to zero: its Frobenius-normalised rank would stay full,
    the zero_rtol rule (spec §A.9) reports 0."""
    cfg = _cfg("norm=none", "optim.epochs=6", "optim.lr=0.1", "optim.weight_decay=9.0", "+probe.weight_ranks=true")
    writer = results.MemoryWriter()
    train.run(cfg, writer)
    rows, last = writer.rows, 6
    for k in range(4):
        assert _value(rows, "weight_rank", last, k) == 0
        assert _value(rows, "weight_fro", last, k) <= 1e-4 * _value(rows, "weight_fro", 0, k)
    assert _value(rows, "avg_rank", last) == 0 and _value(rows, "diverged", last) == 0.0
    assert _value(rows, "weight_rank", 0, 1) == 16
    loose = results.MemoryWriter()
    train.run(_cfg("norm=none", "optim.epochs=6", "optim.lr=0.1", "optim.weight_decay=9.0",
                   "+probe.weight_ranks=true", "+probe.zero_rtol=0.0"), loose)
    assert _value(loose.rows, "weight_rank", last, 1) > 0  # without the rule the normalised rank stays


def test_divergence_does_not_crash_and_is_recorded(outputs, monkeypatch):
    original = torch.linalg.svdvals

    def svdvals(a):
        assert torch.isfinite(a).all(), "an SVD of a non-finite matrix"
        return original(a)

    monkeypatch.setattr(torch.linalg, "svdvals", svdvals)
    cfg = config.compose("train", [*SMALL[:-1], "norm=none", "optim.epochs=6", "optim.lr=1e12", *RANKS])
    directory, outcome = results.execute(cfg, train.run)
    assert outcome == "done"
    info = results.read_status(directory)
    rows = _rows(directory)
    steps = sorted({r[1] for r in rows})
    stop = steps[-1]
    assert info["diverged"] is True and info["diverged_at"] == {"0": stop} and stop < 6  # stopped early
    assert _value(rows, "diverged", stop) == 1.0 and all(_value(rows, "diverged", t) == 0.0 for t in steps[:-1])
    assert any(math.isnan(_value(rows, "weight_rank", stop, k)) for k in range(4))
    assert math.isnan(_value(rows, "avg_rank", stop))
    assert sorted(t for _, t in results.load_spectra(directory)) == steps


# ------------------------------------------------------------------------------------------------ spectra, resume


def test_spectra_round_trip_and_offline_ranks(outputs):
    cfg = _cfg("n_seeds=2", "optim.epochs=3", "optim.lr=0.2", "optim.momentum=0.9", "optim.weight_decay=0.05",
               "data.dim=20", *RANKS)
    directory, _ = results.execute(cfg, train.run)
    rows = _rows(directory)
    found = results.load_spectra(directory)
    assert sorted(found) == [(s, t) for s in (0, 1) for t in range(4)]
    for (seed, step), spectra in found.items():
        fro0 = [wm.frobenius(torch.from_numpy(s)) for s in found[(seed, 0)]]
        assert len(spectra) == 4
        for k, sv in enumerate(spectra):
            sv = torch.from_numpy(sv)
            logged = _value(rows, "weight_rank", step, k, seed)
            assert wm.weight_rank(sv, fro0[k], 1e-4, 1e-4).item() == logged
            assert wm.weight_rank(sv, fro0[k], 1e-3, 1e-4).item() <= logged
            assert wm.frobenius(sv).item() == pytest.approx(_value(rows, "weight_fro", step, k, seed), rel=1e-12)


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("before_save", [False, True])
def test_a_killed_run_resumes_to_the_same_metrics_and_spectra(outputs, monkeypatch, tmp_path, before_save):
    overrides = ["n_seeds=2", "optim.epochs=4", "optim.lr=0.1", "optim.momentum=0.9", "optim.weight_decay=0.01",
                 *RANKS]
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "clean"))
    clean_dir, _ = results.execute(_cfg(*overrides), train.run)
    clean = (clean_dir / "metrics.csv").read_bytes()
    clean_spectra = results.load_spectra(clean_dir)

    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "killed"))
    original = checkpoint.save

    def save(path, state):
        at = (state["replicate"], state["trainer"]["epoch"]) == (1, 2)
        if at and before_save:  # epoch 2's rows and spectra are written, its checkpoint is not
            raise Killed
        original(path, state)
        if at:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save)
        with pytest.raises(Killed):
            results.execute(_cfg(*overrides), train.run)
    directory = results.run_dir(_cfg(*overrides))
    assert (1, 2) in results.load_spectra(directory)
    if before_save:  # a stale later file, as if a kill had come between a file and its rows
        spectra_files.write_spectra(directory, 1, 3, [np.zeros(2)])
    _, outcome = results.execute(_cfg(*overrides), train.run)
    assert outcome == "done"
    assert json.loads((directory / "run.json").read_text())["resumed"].startswith("from replicate 1")
    assert (directory / "metrics.csv").read_bytes() == clean
    resumed = results.load_spectra(directory)
    assert sorted(resumed) == sorted(clean_spectra)
    for key, spectra in clean_spectra.items():
        for a, b in zip(spectra, resumed[key]):
            np.testing.assert_array_equal(a, b)


def test_the_probe_measures_the_loss_the_run_trains_on():
    """With ``optim.loss=mse`` the probe's ``loss`` row is the batch's mean squared error to one-hot targets (and
    its ``grad_norm`` that loss's gradient), computed here independently in float64; ``ce`` stays cross-entropy."""
    from bnexp.probe import probe

    for loss in ("ce", "mse"):
        cfg = _cfg("optim.epochs=1", f"+optim.loss={loss}")
        spec = train.probe_spec(cfg)
        assert spec.loss == loss
        x, y, *_ = data.make_dataset(cfg.data, 0, "cpu", torch.float64)
        model = train.make_model(cfg, x[0].numel(), int(cfg.data.n_classes), 0)
        xb, yb = x[:12], y[:12]
        items = {(layer, name): float(v) for layer, name, v in probe(model, xb, yb, spec)}
        model.train()
        logits = model(xb)
        if loss == "mse":
            want = ((logits - F.one_hot(yb, logits.shape[1]).double()) ** 2).mean()
        else:
            want = F.cross_entropy(logits, yb)
        assert items[(None, "loss")] == pytest.approx(want.item(), rel=1e-12)
        weight = model.weight_layers()[0].weight
        (grad,) = torch.autograd.grad(want, weight)
        assert items[(0, "grad_norm")] == pytest.approx(float(grad.norm()), rel=1e-9)

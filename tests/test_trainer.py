"""The trainer of ``bnexp train`` (optim.epochs > 0): optimisers and schedules against plain torch loops,
minibatch sampling, log points, the learning-rate grid, directional gradient alignment against independent
oracles, checkpoints and resume (byte-identical metrics.csv), precision decisions and reproducibility."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnexp import config, data, metrics, probe, results
from bnexp.engines import train
from bnexp.errors import ConfigError
from bnexp.nn import MLP
from bnexp.runtime import DTYPES
from bnexp.training import checkpoint, fit, measures, optim, precision, rng

SMALL = ["model.depth=3", "model.width=16", "data.dim=8", "data.n_train=64", "data.n_test=16",
         "data.batch_size=12", "runtime.progress=false", "probe.metrics=[rank_lower_bound]"]


FakeWriter = results.MemoryWriter


def _cfg(*overrides: str):
    return config.compose("train", [*SMALL, *overrides])


def _run(*overrides: str) -> FakeWriter:
    writer = FakeWriter()
    train.run(_cfg(*overrides), writer)
    return writer


def _series(rows, metric, *, seed=0, layer=None) -> dict[int, float]:
    return {r[1]: r[4] for r in rows if r[3] == metric and r[0] == seed and r[2] == layer}


# ------------------------------------------------------------------------------------------------ oracle loop


def _manual_losses(cfg, seed=0) -> list[tuple[float, int]]:
    """Per optimiser step (loss, batch size), training by hand with plain torch (float64 configs)."""
    dtype = DTYPES[cfg.dtype]
    x, y, *_ = data.make_dataset(cfg.data, seed, "cpu", dtype)
    model = train.make_model(cfg, x.shape[1], cfg.data.n_classes, seed, "cpu", dtype).train()
    o = cfg.optim
    if o.name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                               weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    n, b = len(x), cfg.data.batch_size
    per_epoch = (o.steps_per_epoch or n // b) if cfg.data.sampling == "replacement" else math.ceil(n / b)
    total = o.epochs * per_epoch
    if o.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)  # stepped per iteration
    elif o.schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.milestones), gamma=o.gamma)  # per epoch
    else:
        sched = None
    gen = torch.Generator().manual_seed(data.derive_seed(seed, "shuffle"))
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(rng.train_seed(seed))
        for _ in range(o.epochs):
            if cfg.data.sampling == "replacement":
                batches = [torch.randint(0, n, (b,), generator=gen) for _ in range(per_epoch)]  # one draw a step
            else:
                perm = torch.randperm(n, generator=gen)
                batches = [perm[i : i + b] for i in range(0, n, b)]
            for idx in batches:
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if o.schedule == "cosine":
                    sched.step()
                out.append((loss.item(), len(idx)))
            if o.schedule == "step":
                sched.step()
    return out


@pytest.mark.parametrize("extra", [
    ["optim.momentum=0.9", "optim.weight_decay=0.01", "optim.lr=0.05"],
    ["optim=adam", "optim.lr=0.01", "optim.weight_decay=0.001"],
    ["optim.schedule=cosine", "optim.lr=0.2", "optim.momentum=0.5"],
    ["optim.schedule=step", "optim.milestones=[1,2]", "optim.gamma=0.3", "optim.lr=0.2"],
])
def test_epoch_losses_equal_a_plain_torch_loop(extra):
    cfg = _cfg("optim.epochs=3", *extra)
    writer = FakeWriter()
    train.run(cfg, writer)
    steps = _manual_losses(cfg)
    per_epoch = len(steps) // 3
    for epoch in range(1, 4):
        chunk = steps[(epoch - 1) * per_epoch : epoch * per_epoch]
        expected = sum(loss * n for loss, n in chunk) / sum(n for _, n in chunk)
        assert _series(writer.rows, "train_loss")[epoch] == pytest.approx(expected, rel=1e-12)


def test_schedule_factors_match_torch_schedulers():
    steps, epochs = 5, 4
    params = [torch.nn.Parameter(torch.zeros(1))]
    ours = optim.LRFactor("cosine", epochs * steps, steps)
    opt = torch.optim.SGD(params, lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps)
    for t in range(epochs * steps):
        assert ours(t) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        ref.step()
    assert ours(0) == 1.0 and ours(epochs * steps) == pytest.approx(0.0, abs=1e-15)
    step = optim.LRFactor("step", epochs * steps, steps, (1, 3), 0.5)
    assert [step(e * steps + 2) for e in range(epochs)] == [1.0, 0.5, 0.5, 0.25]
    assert optim.LRFactor("constant", 10, 5)(7) == 1.0


# ------------------------------------------------------------------------------------------------ sampling, logs


def test_replacement_sampling_draws_iid_indices():
    gen = torch.Generator().manual_seed(0)
    batches = optim.epoch_batches(10, 8, gen, "cpu", "replacement", 50)
    stacked = torch.stack(list(batches))
    assert stacked.shape == (50, 8) and stacked.min() >= 0 and stacked.max() <= 9
    assert any(len(set(b.tolist())) < 8 for b in batches)  # with replacement: repeats within a batch
    counts = torch.bincount(stacked.flatten(), minlength=10).double()
    assert counts.min() > 20  # every index drawn, about 40 times each
    shuffled = optim.epoch_batches(10, 4, torch.Generator().manual_seed(0), "cpu", "shuffle", 0)
    assert [len(b) for b in shuffled] == [4, 4, 2] and sorted(torch.cat(shuffled).tolist()) == list(range(10))
    dropped = optim.epoch_batches(10, 4, torch.Generator().manual_seed(0), "cpu", "shuffle", 0, drop_last=True)
    assert [len(b) for b in dropped] == [4, 4]


def test_log_every_logs_at_iterations_with_running_means(outputs):
    # 64 samples, batch 12: 6 steps per epoch (the last of 4 samples); 2 epochs = 12 steps; log at 5, 10, 12
    cfg = _cfg("optim.epochs=2", "optim.lr=0.1", "optim.log_every=5", "probe.weight_metrics=[rank_np]")
    directory, _ = results.execute(cfg, train.run)
    df = results.read_metrics(directory)
    assert sorted(df.step.unique()) == [0, 5, 10, 12]
    assert results.read_status(directory)["step_unit"] == "iteration"
    steps = _manual_losses(cfg)
    losses = dict(zip(df[df.metric == "train_loss"].step, df[df.metric == "train_loss"].value))
    for lo, hi in ((0, 5), (5, 10), (10, 12)):
        chunk = steps[lo:hi]
        assert losses[hi] == pytest.approx(sum(l * n for l, n in chunk) / sum(n for _, n in chunk), rel=1e-12)
    for step in (0, 5, 10, 12):  # weight metrics and grad norms at every log point, not only at init
        at = df[df.step == step]
        assert sorted(at[at.metric == "weight_rank_np"].layer) == [0, 1, 2, 3]
        assert sorted(at[at.metric == "grad_norm"].layer) == [0, 1, 2, 3]
        assert {"test_loss", "test_acc", "train_acc", "loss"} <= set(at.metric)


def test_replacement_epochs_and_steps_per_epoch():
    writer = _run("optim.epochs=2", "data.sampling=replacement", "optim.steps_per_epoch=3", "optim.log_every=1")
    assert sorted(_series(writer.rows, "train_loss")) == [0, 1, 2, 3, 4, 5, 6]
    default = _run("optim.epochs=1", "data.sampling=replacement", "optim.log_every=1")
    assert max(_series(default.rows, "train_loss")) == 64 // 12
    cfg = _cfg("optim.epochs=2", "data.sampling=replacement", "optim.lr=0.1")
    steps = _manual_losses(cfg)
    got = _series(_run("optim.epochs=2", "data.sampling=replacement", "optim.lr=0.1").rows, "train_loss")
    assert got[2] == pytest.approx(np.mean([l for l, _ in steps[5:]]), rel=1e-12)


# ------------------------------------------------------------------------------------------------ lr grid


def test_lr_grid_keeps_the_run_with_the_lowest_final_training_loss(outputs, monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total, initial, **kw):
            self.total, self.n = total, initial
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.n += n

        def set_postfix(self, **kw):
            pass

    monkeypatch.setattr(fit, "tqdm", Bar)
    base = ["optim.epochs=2", "n_seeds=2", "optim.momentum=0.5"]
    cfg = _cfg(*base, "optim.lr_grid=[0.0001,0.3,0.01]")
    directory, _ = results.execute(cfg, train.run)
    assert len(bars) == 6 and all(b.n == b.total == 12 for b in bars)  # one bar per seed × lr, no double count
    df = results.read_metrics(directory)
    info = results.read_status(directory)["lr_search"]
    for seed in (0, 1):
        rows = df[df.seed == seed]
        finals = []
        for lr in (0.0001, 0.3, 0.01):
            plain = FakeWriter()
            train.run(_cfg(*base, f"optim.lr={lr}"), plain)
            finals.append(_series(plain.rows, "train_loss", seed=seed)[2])
            if lr == info[str(seed)]["chosen_lr"]:
                chosen = [r for r in plain.rows if r[0] == seed]
        best = int(np.argmin(finals))
        assert info[str(seed)]["chosen_index"] == best and info[str(seed)]["final_train_loss"] == finals
        lr_row = rows[rows.metric == "lr"]
        assert list(lr_row.step) == [0] and lr_row.layer.isna().all()
        assert lr_row.value.item() == [0.0001, 0.3, 0.01][best]
        grid = rows[rows.metric.isin(["grid_lr", "grid_train_loss"])]
        assert set(grid.step) == {2} and sorted(grid.layer.unique()) == [0, 1, 2]
        assert list(grid[grid.metric == "grid_train_loss"].sort_values("layer").value) == finals
        kept = rows[~rows.metric.isin(["lr", "grid_lr", "grid_train_loss"])]
        assert len(kept) == len(chosen)  # only the chosen lr's rows, identical to a plain run at that lr
        assert np.array_equal(kept.value.to_numpy(), np.array([r[4] for r in chosen]), equal_nan=True)


def test_choose_lr_treats_nan_as_worst():
    assert fit.choose_lr([float("nan"), 2.0, 1.0, 1.0]) == 2
    assert fit.choose_lr([float("nan"), None]) == 0


# ------------------------------------------------------------------------------------------------ alignment


def test_pairwise_cosines_against_numpy():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((7, 5)) + 0.3
    u = h / np.linalg.norm(h, axis=1, keepdims=True)
    c = u @ u.T
    pairs = c[np.triu_indices(7, 1)]
    assert metrics.mean_abs_cosine(torch.from_numpy(h)).item() == pytest.approx(np.abs(pairs).mean(), rel=1e-12)
    g = torch.from_numpy(h @ h.T)
    assert metrics.gram_mean_cosine(g).item() == pytest.approx(pairs.mean(), rel=1e-12)


def _aligned(cfg, x, y, model):
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    items = probe.probe(model, x, y, spec)
    return {name: v.item() for layer, name, v in items if layer is None}


def _model_batch(cfg, seed=0):
    dtype = DTYPES[cfg.dtype]
    x, y, *_ = data.make_dataset(cfg.data, seed, "cpu", dtype)
    model = train.make_model(cfg, x.shape[1], cfg.data.n_classes, seed, "cpu", dtype).train()
    return model, x[: cfg.data.batch_size], y[: cfg.data.batch_size]


def test_alignment_is_one_for_a_deep_vanilla_relu_net_and_lower_with_bn():
    values = {}
    for norm in ("none", "bn_torch"):
        cfg = _cfg(f"norm={norm}", "model.depth=20", "model.width=32", "data.batch_size=32", "probe.alignment=true",
                   "probe.grad_norms=false", "probe.metrics=[]")
        values[norm] = _aligned(cfg, *(_model_batch(cfg)[1:]), _model_batch(cfg)[0])["grad_alignment"]
    assert values["none"] > 0.999  # rank one last layer: A_last ≈ 1 (rank Prop 19, spec §0.4)
    assert values["bn_torch"] < 0.6


def test_grad_alignment_equals_per_neuron_readout_gradient_alignment():
    # Prop 19 as an oracle: per-sample gradients of each readout row k (ℓ_i from the BN batch forward)
    cfg = _cfg("probe.alignment=true", "probe.alignment_samples=8", "act=tanh")
    model, x, y = _model_batch(cfg)
    got = _aligned(cfg, x, y, model)["grad_alignment"]
    with probe.preserved_buffers(model):
        losses = F.cross_entropy(model(x), y, reduction="none")[:8]
        w = model.weight_layers()[-1].weight
        grads = np.stack([torch.autograd.grad(l, w, retain_graph=True)[0].numpy() for l in losses])  # (m, k, d)
    per_row = []
    for k in range(grads.shape[1]):
        g = grads[:, k, :]
        u = g / np.linalg.norm(g, axis=1, keepdims=True)
        per_row.append(np.abs((u @ u.T)[np.triu_indices(8, 1)]).mean())
    assert got == pytest.approx(np.mean(per_row), rel=1e-10)


def test_grad_cosine_full_against_single_sample_gradients():
    # without BN the samples are independent: ∇θ ℓ_i is the gradient of a forward of sample i alone
    cfg = _cfg("norm=none", "probe.alignment=true", "probe.alignment_samples=6")
    model, x, y = _model_batch(cfg)
    got = _aligned(cfg, x, y, model)["grad_cosine_full"]
    vectors = []
    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        vectors.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
    v = np.stack(vectors)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert got == pytest.approx((u @ u.T)[np.triu_indices(6, 1)].mean(), rel=1e-10)


def test_alignment_rows_when_training_and_the_model_is_untouched():
    writer = _run("optim.epochs=2", "probe.alignment=true", "probe.alignment_samples=4")
    for name in ("grad_alignment", "grad_cosine_full"):
        assert sorted(_series(writer.rows, name)) == [0, 1, 2]
    cfg = _cfg("probe.alignment=true")
    model, x, y = _model_batch(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _aligned(cfg, x, y, model)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------------ checkpoints


class Killed(RuntimeError):
    pass


def _kill_at(monkeypatch, replicate, grid_index, epoch, *, before_save=False):
    original = checkpoint.save

    def save(path, state):
        at = (state["replicate"], state["grid_index"], state["trainer"]["epoch"]) == (replicate, grid_index, epoch)
        if at and before_save:  # the epoch's rows are written, its checkpoint is not: they must be redone
            raise Killed
        original(path, state)
        if at:
            raise Killed

    monkeypatch.setattr(checkpoint, "save", save)


@pytest.mark.parametrize(("extra", "where", "before_save"), [
    (["n_seeds=2", "optim.momentum=0.9"], (1, 0, 2), False),
    (["optim=adam", "optim.lr_grid=[0.001,0.01]", "optim.schedule=cosine"], (0, 1, 2), False),
    (["optim.log_every=5", "data.sampling=replacement", "optim.schedule=step", "optim.milestones=[2]"],
     (0, 0, 3), True),
])
def test_a_killed_run_resumes_to_the_same_metrics_csv(outputs, monkeypatch, tmp_path, extra, where, before_save):
    overrides = ["optim.epochs=4", "optim.lr=0.05", *extra]
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "clean"))
    clean_dir, _ = results.execute(_cfg(*overrides), train.run)
    clean = (clean_dir / "metrics.csv").read_bytes()
    assert not (clean_dir / "checkpoint.pt").exists()  # deleted when the run finishes

    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "killed"))
    with monkeypatch.context() as m:
        _kill_at(m, *where, before_save=before_save)
        with pytest.raises(Killed):
            results.execute(_cfg(*overrides), train.run)
    directory = results.run_dir(_cfg(*overrides))
    assert results.read_status(directory)["status"] == "failed" and (directory / "checkpoint.pt").exists()
    partial = (directory / "metrics.csv").read_bytes()
    assert 0 < len(partial) < len(clean) or "lr_grid" in str(extra)
    _, outcome = results.execute(_cfg(*overrides), train.run)
    assert outcome == "done"
    info = results.read_status(directory)
    assert info["status"] == "done" and info["resumed"].startswith("from replicate")
    assert (directory / "metrics.csv").read_bytes() == clean
    assert not (directory / "checkpoint.pt").exists()


def test_checkpoint_kept_on_request_and_ignored_when_forced(outputs):
    cfg = _cfg("optim.epochs=2", "runtime.keep_checkpoint=true", "runtime.checkpoint_every=5")
    directory, _ = results.execute(cfg, train.run)
    state = checkpoint.load(directory / "checkpoint.pt")
    assert state["trainer"]["epoch"] == 2 and state["csv_bytes"] == len((directory / "metrics.csv").read_bytes())
    first = (directory / "metrics.csv").read_bytes()
    results.execute(cfg, train.run, force=True)  # force starts over: the old checkpoint is not used
    assert (directory / "metrics.csv").read_bytes() == first
    assert "resumed" not in results.read_status(directory)


def test_a_checkpoint_that_does_not_fit_the_file_starts_over(outputs, monkeypatch):
    cfg = _cfg("optim.epochs=3")
    directory, _ = results.execute(cfg, train.run)
    clean = (directory / "metrics.csv").read_bytes()
    with monkeypatch.context() as m:
        _kill_at(m, 0, 0, 2)
        with pytest.raises(Killed):
            results.execute(cfg, train.run, force=True)
    (directory / "metrics.csv").write_bytes(clean[:100])  # shorter than the checkpoint says
    results.execute(cfg, train.run)
    assert (directory / "metrics.csv").read_bytes() == clean
    assert results.read_status(directory)["resumed"].startswith("no:")


def test_checkpoint_save_is_atomic_and_load_tolerates_garbage(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"x": torch.arange(3)})
    assert torch.equal(checkpoint.load(path)["x"], torch.arange(3)) and not (tmp_path / "checkpoint.pt.tmp").exists()
    path.write_bytes(b"not a checkpoint")
    assert checkpoint.load(path) is None and checkpoint.load(tmp_path / "missing.pt") is None


# ------------------------------------------------------------------------------------------------ precision


def test_precision_plan():
    plan = precision.precision_plan
    assert plan("cuda", torch.float32, "auto", True) == precision.Precision(torch.bfloat16, True)
    assert plan("cuda", torch.float32, "auto", False) == precision.Precision(torch.bfloat16, False)
    assert plan("cuda", torch.float64, "auto", True) == precision.Precision(None, True)
    assert plan("cuda", torch.float32, "off", True) == precision.Precision(None, True)
    assert plan("cuda", torch.float32, False, True) == precision.Precision(None, True)  # YAML's bare `off`
    assert plan("cpu", torch.float32, "auto", True) == precision.Precision(None, False)
    assert plan("cpu", torch.float32, "bf16", True) == precision.Precision(torch.bfloat16, False)
    with pytest.raises(ConfigError, match=r"^runtime\.amp='bf16'.*float32"):
        plan("cpu", torch.float64, "bf16", False)
    with pytest.raises(ConfigError, match=r"^runtime\.amp='fp16'.*auto, bf16, off"):
        plan("cuda", torch.float32, "fp16", False)


def test_bf16_autocast_keeps_norms_in_float32():
    model = MLP(8, 16, 2, 3, norm="bn_torch", act="relu")
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
    precision.float32_norms(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(12, 8))
    assert logits.dtype == torch.bfloat16  # the Linear layers run in bf16
    assert seen and all(pair == (torch.float32, torch.float32) for pair in seen)


def test_bf16_training_runs_on_the_cpu():
    conv = ["model=convnet", "model.depth=2", "model.width=4", "data=shifted_gaussian", "data.n_train=32",
            "data.n_test=8", "data.batch_size=8", "dtype=float32", "optim.epochs=1", "optim.lr=0.05"]
    writer = FakeWriter()
    cfg = config.compose("train", [*conv, "runtime.amp=bf16", "runtime.progress=false",
                                   "probe.metrics=[rank_lower_bound]"])
    train.run(cfg, writer)
    assert writer.info["precision"].startswith("bf16 autocast")
    assert all(np.isfinite(r[4]) for r in writer.rows if r[3] in ("train_loss", "test_loss", "loss"))


def test_channels_last_path_gives_the_same_numbers(monkeypatch):
    conv = ["model=convnet", "model.depth=2", "model.width=4", "data=shifted_gaussian", "data.n_train=32",
            "data.n_test=8", "data.batch_size=8", "optim.epochs=1", "optim.lr=0.05", "runtime.progress=false",
            "probe.metrics=[rank_lower_bound]"]
    plain = FakeWriter()
    train.run(config.compose("train", conv), plain)
    monkeypatch.setattr(train, "precision_plan", lambda *a, **k: precision.Precision(None, True))  # CUDA's layout here
    last = FakeWriter()
    train.run(config.compose("train", conv), last)
    assert "channels_last" in last.info["precision"]
    assert [r[:4] for r in last.rows] == [r[:4] for r in plain.rows]
    np.testing.assert_allclose([r[4] for r in last.rows], [r[4] for r in plain.rows], rtol=1e-9)


def test_device_cuda_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match=r"^runtime\.device='cuda'.*not available"):
        train.validate(_cfg("runtime.device=cuda"))


# ------------------------------------------------------------------------------------------------ runs


def test_training_is_reproducible_on_the_cpu(outputs):
    cfg = _cfg("optim=adam", "optim.epochs=2", "optim.schedule=cosine", "data.sampling=replacement",
               "optim.log_every=4", "probe.alignment=true", "dtype=float32", "n_seeds=2")
    directory, _ = results.execute(cfg, train.run)
    first = (directory / "metrics.csv").read_bytes()
    results.execute(cfg, train.run, force=True)
    assert (directory / "metrics.csv").read_bytes() == first
    info = json.loads((directory / "run.json").read_text())
    assert info["step_unit"] == "iteration" and info["precision"] == "no autocast"


@pytest.mark.parametrize(("override", "key", "mentions"), [
    ("optim.name=rmsprop", "optim.name", "adam, sgd"),
    ("optim.schedule=linear", "optim.schedule", "constant, cosine, step"),
    ("optim.schedule=step", "optim.milestones", "non-empty"),
    ("optim.milestones=[3,2]", "optim.milestones", "increasing"),
    ("optim.milestones=[0]", "optim.milestones", "≥ 1"),
    ("optim.gamma=0", "optim.gamma", "> 0"),
    ("optim.lr_grid=[]", "optim.lr_grid", "non-empty"),
    ("optim.lr_grid=[0.1,-1]", "optim.lr_grid", "> 0"),
    ("optim.lr_grid=[0.1,0.1]", "optim.lr_grid", "distinct"),
    ("optim.log_every=0", "optim.log_every", "≥ 1"),
    ("optim.steps_per_epoch=5", "optim.steps_per_epoch", "replacement"),
    ("data.sampling=bootstrap", "data.sampling", "replacement, shuffle"),
    ("runtime.amp=fp16", "runtime.amp", "auto, bf16, off"),
    ("runtime.amp=bf16", "runtime.amp", "float32"),  # the base dtype is float64
    ("runtime.checkpoint_every=0", "runtime.checkpoint_every", "≥ 1"),
    ("runtime.keep_checkpoint=maybe", "runtime.keep_checkpoint", "True"),
    ("probe.alignment=maybe", "probe.alignment", "True"),
    ("probe.alignment_samples=1", "probe.alignment_samples", "≥ 2"),
    ("optim.momentum=-1", "optim.momentum", "[0, 1)"),
])
def test_validation_names_the_key(override, key, mentions):
    with pytest.raises(ConfigError) as err:
        train.validate(_cfg("optim.epochs=1", override))
    assert err.value.key == key and str(err.value).startswith(key) and mentions in str(err.value)


def test_adam_validation():
    with pytest.raises(ConfigError, match=r"^optim\.betas"):
        train.validate(_cfg("optim=adam", "optim.betas=[0.9,1.0]"))
    with pytest.raises(ConfigError, match=r"^optim\.eps"):
        train.validate(_cfg("optim=adam", "optim.eps=0"))


def test_dropout_model_resumes_and_probing_does_not_perturb_training(outputs, monkeypatch, tmp_path):
    # VGG-mini has dropout: training draws from torch's global generator, which the checkpoint must restore and
    # which the (train-mode) probe must not advance.
    from bnexp.nn import MODELS

    if "vgg" not in MODELS:
        pytest.skip("no vgg model")
    overrides = ["model=vgg_mini", "model.dropout=0.5", "model.hidden=16", "data=shifted_gaussian",
                 "data.n_train=24", "data.n_test=8", "data.batch_size=8", "optim.epochs=3", "optim.lr=0.05",
                 "runtime.progress=false", "probe.metrics=[rank_lower_bound]", "probe.layers=last"]
    lean = FakeWriter()  # 3 steps per epoch: probes after steps 3, 6, 9
    train.run(config.compose("train", [*overrides, "optim.log_every=3"]), lean)
    full = FakeWriter()  # a probe (dropout draws) after every step
    train.run(config.compose("train", [*overrides, "optim.log_every=1", "probe.alignment=true"]), full)
    for name in ("test_loss", "loss"):
        assert {s: v for s, v in _series(full.rows, name).items() if s % 3 == 0} == _series(lean.rows, name)

    cfg = config.compose("train", overrides)
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "clean"))
    clean_dir, _ = results.execute(cfg, train.run)
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "killed"))
    with monkeypatch.context() as m:
        _kill_at(m, 0, 0, 1)
        with pytest.raises(Killed):
            results.execute(cfg, train.run)
    directory, _ = results.execute(cfg, train.run)
    assert (directory / "metrics.csv").read_bytes() == (clean_dir / "metrics.csv").read_bytes()


def test_pretraining_runs_once_per_replicate_before_step_0_and_resumes(outputs, monkeypatch, tmp_path):
    from bnexp.training import pretrain

    base = ["norm=none", "model.depth=4", "optim.epochs=2", "optim.lr_grid=[0.001,0.01,0.1]"]
    options = ["pretrain.minibatches=3", "pretrain.steps=2", "pretrain.batch_size=12", "pretrain.lr=0.01",
               "pretrain.progress=false"]
    pre = [*base, "pretrain=end_to_end", *options]
    cfg = _cfg(*pre)
    calls = []
    original = pretrain.pretrain
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: calls.append(a[-1]) or original(*a, **k))
    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "clean"))
    clean_dir, _ = results.execute(cfg, train.run)
    assert calls == [0]  # once for the replicate, shared by the three grid points
    assert set(results.read_status(clean_dir)["pretrain"]) == {"0"}
    model, x, y = _model_batch(_cfg(*base))
    original(model, *data.make_dataset(cfg.data, 0, "cpu", torch.float64)[:2], cfg.pretrain, 0)
    spec = probe.ProbeSpec.from_cfg(cfg.probe, cfg.model.depth)
    expected = {name: v.item() for layer, name, v in probe.probe(model, x, y, spec) if layer is None}["loss"]
    df = results.read_metrics(clean_dir)
    assert df[(df.metric == "loss") & (df.step == 0)].value.item() == pytest.approx(expected, rel=1e-12)
    plain = results.read_metrics(results.execute(_cfg(*base), train.run)[0])
    assert plain[(plain.metric == "loss") & (plain.step == 0)].value.item() != pytest.approx(expected, rel=1e-6)

    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path / "killed"))
    with monkeypatch.context() as m:
        _kill_at(m, 0, 1, 1)
        with pytest.raises(Killed):
            results.execute(cfg, train.run)
    calls.clear()
    directory, _ = results.execute(cfg, train.run)  # grid point 2 starts from the checkpointed pre-trained state
    assert calls == []
    assert (directory / "metrics.csv").read_bytes() == (clean_dir / "metrics.csv").read_bytes()


def test_probe_measures_with_dropout_off_and_leaves_the_mode_alone():
    """Dropout would give each probe sample its own mask; the probe measures the network itself."""
    from bnexp.nn import VGG

    torch.manual_seed(0)
    kwargs = dict(d_in=3 * 8 * 8, width=64, depth=6, d_out=10, cfg="mini", norm="none", hidden=32)
    with_dropout, without = VGG(dropout=0.5, **kwargs), VGG(dropout=0.0, **kwargs)
    without.load_state_dict(with_dropout.state_dict())
    spec = probe.ProbeSpec.from_cfg(config.compose("train", ["probe.alignment=true", "probe.layers=last",
                                                             "probe.metrics=[rank_torch]"]).probe, 6)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(10, (16,))
    with_dropout.train(), without.train()
    got = {(layer, name): float(v) for layer, name, v in probe.probe(with_dropout, x, y, spec)}
    want = {(layer, name): float(v) for layer, name, v in probe.probe(without, x, y, spec)}
    assert got == pytest.approx(want, rel=1e-6)
    assert with_dropout.training and all(m.training for m in with_dropout.modules())


def test_chunks_cover_every_sample_and_never_leave_one_alone_under_batch_statistics():
    assert measures.chunks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert measures.chunks(9, 4) == [(0, 4), (4, 8), (8, 9)]
    assert measures.chunks(9, 4, merge_single=True) == [(0, 4), (4, 9)]
    assert measures.chunks(1, 4, merge_single=True) == [(0, 1)]


def test_step_zero_losses_use_batch_statistics_not_initial_running_statistics():
    """Before training torch BN's running statistics are (0, 1): an eval-mode pass would measure the network
    without normalisation. Step 0 must match a train-mode pass (buffers untouched), not an eval-mode one."""
    torch.manual_seed(0)
    model = MLP(d_in=8, width=16, depth=6, d_out=3, norm="bn_torch", act="relu").double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(4.0)  # far from unit scale: eval mode with running stats (0, 1) differs a lot
    x, y = torch.randn(40, 8, dtype=torch.float64), torch.randint(3, (40,))
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    loss, _ = measures.evaluate(model, x, y, 20, batch_statistics=True)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in buffers.items())  # measuring changed nothing
    model.train()
    with torch.no_grad():
        want = sum(F.cross_entropy(model(x[i:i + 20]), y[i:i + 20], reduction="sum") for i in (0, 20)) / 40
    assert float(loss) == pytest.approx(float(want), rel=1e-12)
    model.load_state_dict({**model.state_dict(), **buffers})
    eval_loss, _ = measures.evaluate(model, x, y, 20)
    assert abs(float(eval_loss) - float(loss)) > 0.1


@pytest.mark.parametrize(("model", "conv"), [("mlp", False), ("resmlp", False), ("convnet", True), ("vgg19", True),
                                             ("resnet50", True)])
def test_conv_models_are_recognised_without_building_them(model, conv):
    cfg = config.compose("train", [f"model={model}"])
    assert train._is_conv(cfg, 3 * 32 * 32, 10, torch.float32) is conv


def test_a_log_point_is_its_measurements_each_writing_the_metrics_it_names():
    """The trainer's rows are its measurements' items in order; each measurement writes exactly its names."""
    from bnexp.probe import ProbeSpec
    from bnexp.training.loop import Trainer

    cfg = _cfg("optim.epochs=1", "probe.weight_metrics=[isometry_gap]", "probe.alignment=true")
    device, dtype = torch.device("cpu"), DTYPES[cfg.dtype]
    networks = train.Networks(cfg, device, dtype, "off")
    split = data.make_dataset(cfg.data, 0, device, dtype)
    d_in = split[0][0].numel()
    spec = ProbeSpec.from_cfg(cfg.probe, train.feature_layers(cfg))
    trainer = Trainer(networks.model(0, d_in), split, networks.probe_batch(*split[:2]), seed=0, lr=0.05,
                      optim=optim.OptimSpec.from_cfg(cfg.optim, cfg.data), spec=spec, batch_size=12,
                      precision=networks.precision(d_in))
    start = trainer.initial_rows()
    assert [m.when for m in trainer.measurements].count(measures.START) == 3
    named = [n for m in trainer.measurements if m.when == measures.START for n in m.names]
    assert list(dict.fromkeys(r[3] for r in start)) == named
    logged: list = []
    trainer.train_epoch(logged.extend)
    assert list(dict.fromkeys(r[3] for r in logged)) == [
        n for m in trainer.measurements if m.when == measures.LOG for n in m.names]
    assert logged[0][3] == "train_loss" and trainer.last_train_loss == logged[0][4]


def test_set_metrics_average_the_metric_of_every_training_chunk():
    """``probe.set_metrics`` (ortho §1.8): rows ``set_<m>`` are the mean over the training set cut into chunks of
    data.batch_size of m of the logits (layer = depth) and of the last hidden layer (layer = depth − 1); here
    against numpy's SVD of each chunk, at step 0 and after an epoch."""
    import numpy as np

    from bnexp import config
    from bnexp.engines import train as engine
    from bnexp.results import MemoryWriter

    cfg = config.compose("train", ["model.depth=3", "model.width=16", "data.dim=8", "data.n_train=50",
                                   "data.n_test=10", "data.batch_size=12", "norm=none", "optim.epochs=1",
                                   "optim.lr=0.05", "runtime.progress=false", "probe.metrics=[rank_lower_bound]",
                                   "+probe.set_metrics=[ortho_gap_spectral,orthogonality_gap]"])
    writer = MemoryWriter()
    engine.run(cfg, writer)
    rows = {(r[1], r[2], r[3]): r[4] for r in writer.rows if r[3].startswith("set_")}
    assert sorted({k[1:] for k in rows}) == [(2, "set_ortho_gap_spectral"), (2, "set_orthogonality_gap"),
                                             (3, "set_ortho_gap_spectral"), (3, "set_orthogonality_gap")]

    def spectral(h: np.ndarray) -> float:  # ‖s/‖s‖ − 1/√k‖, the ortho code's gap
        s = np.linalg.svd(h, compute_uv=False)
        return float(np.linalg.norm(s / np.linalg.norm(s) - 1 / np.sqrt(len(s))))

    x, *_ = engine.data.make_dataset(cfg.data, 0, "cpu", torch.float64)
    model = engine.make_model(cfg, x[0].numel(), 10, 0)  # the initial network: step 0
    with torch.no_grad():
        logits, features = model.forward_features(x)
    # chunks of 12 in order; the last chunk (2 samples) stays its own
    bounds = [(0, 12), (12, 24), (24, 36), (36, 48), (48, 50)]
    want = np.mean([spectral(logits[a:b].numpy()) for a, b in bounds])
    assert rows[(0, 3, "set_ortho_gap_spectral")] == pytest.approx(want, rel=1e-9)
    hidden = np.mean([spectral(features[-1]["post"][a:b].numpy()) for a, b in bounds])
    assert rows[(0, 2, "set_ortho_gap_spectral")] == pytest.approx(hidden, rel=1e-9)
    assert rows[(1, 3, "set_ortho_gap_spectral")] != rows[(0, 3, "set_ortho_gap_spectral")]  # trained: it moved


def test_probe_every_k_log_points_and_the_timing_note(tmp_path, monkeypatch):
    """``probe.every = 2``: the probe's rows (here grad_norm, weight_isometry_gap) at steps 0, 2, 4 only, the other
    rows every epoch; run.json notes the training time and the share of it spent measuring."""
    import json

    from bnexp import config, results
    from bnexp.engines import train as engine

    monkeypatch.setenv("BNEXP_OUTPUTS", str(tmp_path))
    cfg = config.compose("train", ["model.depth=3", "model.width=8", "data.dim=8", "data.n_train=40",
                                   "data.n_test=10", "data.batch_size=8", "optim.epochs=5", "optim.lr=0.05",
                                   "runtime.progress=false", "probe.metrics=[rank_lower_bound]",
                                   "+probe.weight_metrics=[isometry_gap]", "+probe.every=2"])
    directory, _ = results.execute(cfg, engine.run)
    rows = results.read_metrics(directory)
    for metric in ("grad_norm", "weight_isometry_gap", "rank_lower_bound"):
        assert sorted(rows.loc[rows["metric"] == metric, "step"].unique()) == [0, 2, 4], metric
    assert sorted(rows.loc[rows["metric"] == "test_acc", "step"].unique()) == [0, 1, 2, 3, 4, 5]
    timing = json.loads((directory / "run.json").read_text())["timing"]["0"]
    assert timing["epochs"] == 5 and timing["seconds"] > 0 and 0 < timing["measure_share"] < 1

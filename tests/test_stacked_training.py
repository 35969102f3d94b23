"""Replicate-stacked SGD (``bnexp.training.stacked``) against a plain per-replicate torch loop, on the CPU in
float64: same initial models (built as the network engine builds them), same index streams, same schedule;
parameters and BN running statistics agree within 1e-10 after several epochs. A diverging replicate is frozen
and flagged while the others still agree."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnexp.engines.train import make_model
from bnexp.nn.models import MODELS
from bnexp.training.optim import epoch_batches
from bnexp.training.stacked import StackedBatches, StackedSGD, shuffle_generators

# 53 % 8 = 5: every epoch ends with a partial batch. (A last batch of 2 makes BN so ill-conditioned — two samples
# normalise to ±γ, amplifying rounding by ~1/sqrt(ε) per layer — that float64 rounding alone reaches 1e-9.)
N, D_IN, K, B = 53, 12, 5, 8
EPOCHS, MILESTONES, GAMMA, MOMENTUM = 4, (2, 3), 0.1, 0.9
SEEDS = (3, 4, 5)
LRS, WDS = (0.05, 0.1, 0.02), (5e-4, 1e-3, 0.0)
TOL = 1e-10


def cfg_for(model: str, norm: str):
    options = {"mlp": {"name": "mlp", "width": 16, "depth": 3, "bias": True, "order": "norm_act", "gain": 1.0,
                       "gain_exponent": 0.0},
               "resblock": {"name": "resblock", "width": 16, "depth": 2, "bias": True}}[model]
    return OmegaConf.create({"model": options, "norm": {"name": norm}, "act": {"name": "relu"},
                             "init": {"name": "torch_default"}})


def dataset():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g, dtype=torch.float64), torch.randint(0, K, (N,), generator=g)


def loss_fn(name, logits, y):
    if name == "mse":
        return F.mse_loss(logits, F.one_hot(y, K).to(logits.dtype))
    return F.cross_entropy(logits, y)


def reference(models, x, y, lrs, wds, loss="ce", seeds=SEEDS):
    """The plain loop: each replicate alone, torch.optim.SGD + MultiStepLR (stepped per epoch), its own index
    stream from the per-run trainer's generator; a replicate whose loss turns non-finite stops."""
    out = []
    for model, lr, wd, gen in zip(models, lrs, wds, shuffle_generators(seeds)):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=wd)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(MILESTONES), GAMMA)
        for _ in range(EPOCHS):
            for idx in epoch_batches(N, B, gen, "cpu", "shuffle", 0):
                opt.zero_grad()
                loss_fn(loss, model(x[idx]), y[idx]).backward()
                opt.step()
            sched.step()
        out.append(model)
    return out


def stacked(models, x, y, lrs, wds, loss="ce"):
    sgd = StackedSGD(models, x, y, lrs=lrs, weight_decays=wds, momentum=MOMENTUM, milestones=MILESTONES,
                     gamma=GAMMA, steps_per_epoch=-(-N // B), loss=loss)
    batches = StackedBatches(N, B, shuffle_generators(SEEDS))
    for _ in range(EPOCHS):
        for idx in batches.epoch():
            sgd.step(idx)
    return sgd


def build(model, norm):
    return [make_model(cfg_for(model, norm), D_IN, K, seed) for seed in SEEDS]


def assert_same(a, b, tol=TOL):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]) if sa[name].dtype == torch.long else \
            (sa[name] - sb[name]).abs().max().item() < tol, name


CASES = [("mlp", "bn_torch", "ce"), ("mlp", "none", "ce"), ("mlp", "bn_torch", "mse")]
if "resblock" in MODELS:
    CASES.append(("resblock", "bn_torch", "ce"))


@pytest.mark.parametrize(("model", "norm", "loss"), CASES)
def test_stacked_matches_plain_loop(model, norm, loss):
    x, y = dataset()
    models = build(model, norm)
    ref = reference(copy.deepcopy(models), x, y, LRS, WDS, loss)
    sgd = stacked(models, x, y, LRS, WDS, loss)
    assert not sgd.diverged.any()
    for got, want in zip(sgd.models(), ref):
        assert_same(got, want)


@pytest.mark.parametrize(("model", "norm"), [c[:2] for c in CASES if c[2] == "ce"])
def test_diverging_replicate_is_frozen(model, norm):
    x, y = dataset()
    lrs = (LRS[0], 1e200, LRS[2])
    models = build(model, norm)
    ref = reference(copy.deepcopy([models[0], models[2]]), x, y, (lrs[0], lrs[2]), (WDS[0], WDS[2]),
                    seeds=(SEEDS[0], SEEDS[2]))
    sgd = stacked(models, x, y, lrs, WDS)
    assert sgd.diverged.tolist() == [False, True, False]
    assert 0 <= int(sgd.diverged_at[1]) < 5
    frozen = sgd.models()[1]
    assert all(torch.isfinite(t).all() for t in frozen.state_dict().values())
    assert_same(sgd.models()[0], ref[0])
    assert_same(sgd.models()[2], ref[1])


def test_state_dict_resumes_bit_for_bit():
    x, y = dataset()
    full = stacked(build("mlp", "bn_torch"), x, y, LRS, WDS)
    sgd = StackedSGD(build("mlp", "bn_torch"), x, y, lrs=LRS, weight_decays=WDS, momentum=MOMENTUM,
                     milestones=MILESTONES, gamma=GAMMA, steps_per_epoch=-(-N // B))
    batches = StackedBatches(N, B, shuffle_generators(SEEDS))
    for idx in batches.epoch():
        sgd.step(idx)
    state, rng = sgd.state_dict(), batches.state()
    resumed = StackedSGD(build("mlp", "bn_torch"), x, y, lrs=(1.0,) * 3, weight_decays=(0.0,) * 3,
                         momentum=MOMENTUM, milestones=MILESTONES, gamma=GAMMA, steps_per_epoch=-(-N // B))
    resumed.load_state_dict(state)
    batches = StackedBatches(N, B, shuffle_generators((0, 0, 0)))
    batches.set_state(rng)
    for _ in range(EPOCHS - 1):
        for idx in batches.epoch():
            resumed.step(idx)
    assert torch.equal(resumed.flat, full.flat) and torch.equal(resumed.stat_flat, full.stat_flat)


def test_unsupported_model_raises():
    with pytest.raises(ValueError, match="supports"):
        StackedSGD([torch.nn.Sequential(torch.nn.Linear(3, 2))], torch.zeros(4, 3), torch.zeros(4).long(),
                   lrs=[0.1], weight_decays=[0.0])


def test_masked_update_matches_rows():
    """The device path (whole-tensor masked update, no host reads) gives the CPU rows' numbers, divergence
    included."""
    x, y = dataset()
    lrs = (LRS[0], 1e200, LRS[2])
    rows = stacked(build("mlp", "bn_torch"), x, y, lrs, WDS)
    sgd = StackedSGD(build("mlp", "bn_torch"), x, y, lrs=lrs, weight_decays=WDS, momentum=MOMENTUM,
                     milestones=MILESTONES, gamma=GAMMA, steps_per_epoch=-(-N // B))
    sgd.sync_free = True
    batches = StackedBatches(N, B, shuffle_generators(SEEDS))
    for _ in range(EPOCHS):
        for idx in batches.epoch():
            sgd.step(idx)
    assert torch.equal(sgd.diverged, rows.diverged) and torch.equal(sgd.diverged_at, rows.diverged_at)
    assert torch.equal(sgd.steps_taken, rows.steps_taken)
    assert (sgd.flat - rows.flat).abs().max().item() < TOL
    assert (sgd.stat_flat - rows.stat_flat).abs().max().item() < TOL


def test_weights_only_decay():
    """wd_on=weights_only: λ_r on the ≥ 2-dim parameters only, as make_optimizer's two parameter groups."""
    x, y = dataset()
    models = build("mlp", "bn_torch")
    ref = []
    for model, lr, wd, gen in zip(copy.deepcopy(models), LRS, WDS, shuffle_generators(SEEDS)):
        params = list(model.parameters())
        opt = torch.optim.SGD([{"params": [p for p in params if p.dim() >= 2]},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=lr, momentum=MOMENTUM, weight_decay=wd)
        for idx in epoch_batches(N, B, gen, "cpu", "shuffle", 0):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        ref.append(model)
    sgd = StackedSGD(models, x, y, lrs=LRS, weight_decays=WDS, momentum=MOMENTUM, wd_on="weights_only")
    for idx in StackedBatches(N, B, shuffle_generators(SEEDS)).epoch():
        sgd.step(idx)
    for got, want in zip(sgd.models(), ref):
        assert_same(got, want)

"""``bnexp.measure`` and the ``Hooked`` wrapper on plain torch models: rows against metrics of activations captured by
the test's own forward hooks (and numpy float64 oracles), conv maps flattened per sample, module selection by type
and name, gradient norms against manual autograd, the model left untouched, and the errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bnexp
from bnexp import metrics
from bnexp.errors import ConfigError
from bnexp.nn.hooked import Hooked, select_modules


def mlp() -> nn.Sequential:
    """Linear → BN → ReLU twice, then a readout: hidden ReLUs are modules "2" and "5"."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16),
                         nn.ReLU(), nn.Linear(16, 4)).double()


def batch(n: int = 12, shape=(8,)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def captured(model: nn.Module, x: torch.Tensor, kind: type[nn.Module], inputs: bool = False) -> list[torch.Tensor]:
    """The outputs (or first inputs) of every ``kind`` module in one forward, by the test's own hooks."""
    found: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, a, o: found.append((a[0] if inputs else o).detach().clone()))
             for m in model.modules() if isinstance(m, kind)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return found


def soft_rank_np(h: np.ndarray, tau: float = 0.5) -> float:
    """#{eigenvalues of M = HᵀH/n rescaled to trace d that are ≥ τ}, numpy float64 (rank paper's rank_τ)."""
    n, d = h.shape
    lam = np.linalg.eigvalsh(h.T @ h / n)
    return float(np.sum(lam * d / lam.sum() >= tau))


def rank_float32_np(h: np.ndarray) -> float:
    """numpy's matrix_rank of H/‖H‖_F in float32: #{σ > σ_max·max(n, d)·eps32}."""
    return float(np.linalg.matrix_rank((h / np.linalg.norm(h)).astype(np.float32)))


def values(df, metric: str) -> list[float]:
    return df[df.metric == metric].sort_values("layer").value.tolist()


# ------------------------------------------------------------------------------------------------ values


def test_rows_equal_metrics_of_the_relu_outputs_captured_independently():
    model, (x, _) = mlp(), batch()
    df = bnexp.measure(model, x, metrics=["soft_rank", "rank_torch", "rank_np"], modules=[nn.ReLU])
    assert list(df.columns) == ["seed", "step", "layer", "module", "metric", "value"]
    reps = [h.numpy() for h in captured(model, x, nn.ReLU)]
    assert df[df.metric == "soft_rank"].module.tolist() == ["2", "5"]
    assert df[df.metric == "soft_rank"].layer.tolist() == [0, 1]
    assert values(df, "soft_rank") == [soft_rank_np(h) for h in reps]
    assert values(df, "rank_torch") == [rank_float32_np(h) for h in reps]
    assert values(df, "rank_np") == [float(np.linalg.matrix_rank(h)) for h in reps]
    assert values(df, "soft_rank") == [metrics.soft_rank(torch.from_numpy(h)).item() for h in reps]
    assert set(df.metric) == {"soft_rank", "rank_torch", "rank_np"}  # no labels: no loss row


def test_top_eigenvalues_and_tau_reach_the_metrics():
    model, (x, _) = mlp(), batch()
    df = bnexp.measure(model, x, metrics=["top_eigenvalues", "soft_rank"], modules="nn.ReLU", top_k=3, tau=0.1)
    h = captured(model, x, nn.ReLU)[1].numpy()
    eig = np.sort(np.linalg.eigvalsh(h.T @ h / len(h)))[::-1][:3]
    layer1 = df[df.layer == 1].set_index("metric").value
    np.testing.assert_allclose([layer1[f"eig_{i}"] for i in (1, 2, 3)], eig, rtol=1e-10)
    assert layer1["soft_rank"] == soft_rank_np(h, tau=0.1)


def test_conv_maps_are_flattened_per_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)).double()
    x, _ = batch(10, (3, 5, 5))
    df = bnexp.measure(model, x, metrics=["soft_rank", "second_moment_fro2"], modules=[nn.Conv2d])
    outs = [h.numpy() for h in captured(model, x, nn.Conv2d)]
    assert [h.shape[1:] for h in outs] == [(4, 5, 5), (2, 5, 5)]
    flat = [h.reshape(len(h), -1) for h in outs]  # (n, C·H·W), channel-major as torch's flatten
    assert values(df, "soft_rank") == [soft_rank_np(h) for h in flat]
    # ‖M‖_F² = ‖HᵀH/n‖_F² of the flattened map: the d = C·H·W feature matrix, not a per-channel one
    np.testing.assert_allclose(values(df, "second_moment_fro2"),
                               [np.sum((h.T @ h / len(h)) ** 2) for h in flat], rtol=1e-10)
    pre = bnexp.measure(model, x, metrics=["soft_rank"], modules=["0"], point="pre")
    assert values(pre, "soft_rank") == [soft_rank_np(x.numpy().reshape(10, -1))]  # the input of conv 0


def test_grad_norms_and_loss_equal_manual_autograd():
    model, (x, y) = mlp(), batch()
    df = bnexp.measure(model, (x, y), metrics=["soft_rank"], modules=[nn.ReLU], grad_norms=True)
    loss = F.cross_entropy(model(x), y)
    weights = [model[0].weight, model[3].weight, model[6].weight]  # the ≥ 2-D weights (BN's γ is 1-D)
    grads = torch.autograd.grad(loss, weights)
    rows = df[df.metric == "grad_norm"].sort_values("layer")
    assert rows.module.tolist() == ["0", "3", "6"] and rows.layer.tolist() == [0, 1, 2]
    np.testing.assert_allclose(rows.value, [g.double().norm().item() for g in grads], rtol=1e-12)
    (row,) = df[df.metric == "loss"].itertuples()
    assert row.value == pytest.approx(loss.item(), rel=1e-12) and row.layer is pd.NA and pd.isna(row.module)
    mse = bnexp.measure(model, x, metrics=["soft_rank"], y=y, loss="mse")
    target = F.one_hot(y, 4).double()
    assert values(mse, "loss") == [pytest.approx(((model(x) - target) ** 2).mean().item(), rel=1e-12)]


def test_the_model_is_left_as_it_was_and_its_mode_respected():
    model, (x, y) = mlp(), batch()
    model(x)  # running statistics away from their initial values
    state = {k: v.clone() for k, v in model.state_dict().items()}
    bnexp.measure(model, (x, y), metrics=["soft_rank"], grad_norms=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # buffers and parameters
    assert all(p.grad is None for p in model.parameters()) and model.training
    model.eval()  # eval mode: BN normalises with its running statistics
    df = bnexp.measure(model, x, metrics=["soft_rank"])
    assert values(df, "soft_rank") == [soft_rank_np(h.numpy()) for h in captured(model, x, nn.ReLU)]
    assert not model.training and not any(m.training for m in model.modules())


def test_dropout_is_off_during_the_probe():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4)).double()
    x, _ = batch()
    df = bnexp.measure(model, x, metrics=["second_moment_fro2"], modules=["2"])
    h = model[1](model[0](x)).detach().numpy()  # dropout as the identity
    assert values(df, "second_moment_fro2") == [pytest.approx(np.sum((h.T @ h / len(h)) ** 2), rel=1e-12)]
    assert model[2].training


def test_the_batch_moves_to_the_models_dtype():
    model, (x, _) = mlp(), batch()
    assert values(bnexp.measure(model, x.float(), metrics=["soft_rank"]), "soft_rank") == \
        values(bnexp.measure(model, x, metrics=["soft_rank"]), "soft_rank")


# ------------------------------------------------------------------------------------------------ selection


class Twice(nn.Module):
    """One ReLU module called twice per forward (as torchvision's BasicBlock), inside named submodules."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16))
        self.act = nn.ReLU(inplace=True)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.act(self.mid(self.act(self.features(x)))))


def test_selection_by_name_type_and_default():
    torch.manual_seed(0)
    model = Twice().double()
    assert [n for n, _ in select_modules(model)] == ["act"]  # default: the activation modules
    assert [n for n, _ in select_modules(model, ["head", "features.1"])] == ["features.1", "head"]
    assert [n for n, _ in select_modules(model, ["features", nn.Linear])] == ["features", "features.0", "mid", "head"]
    assert [n for n, _ in select_modules(model, "torch.nn:BatchNorm1d")] == ["features.1"]
    x, _ = batch()
    df = bnexp.measure(model, x, metrics=["soft_rank"])
    assert df.module.tolist() == ["act", "act#2"] and df.layer.tolist() == [0, 1]  # one row per call


def test_hooked_copies_survive_in_place_operations():
    """A hooked BN followed by an in-place ReLU: "post" is the BN output, and a hooked in-place ReLU's "pre" is its
    input as it was before the call."""
    torch.manual_seed(0)
    model = Twice().double()
    x, _ = batch()
    with torch.no_grad():
        bn = model.features(x).clone()
        _, layers = Hooked(model, ["features.1", "act"]).forward_features(x)
    assert torch.equal(layers[0]["post"], bn) and (bn < 0).any()  # not overwritten by the ReLU
    assert torch.equal(layers[1]["pre"], bn) and torch.equal(layers[1]["post"], bn.clamp(min=0))
    hooked = Hooked(model)
    assert [m.__class__.__name__ for m in hooked.weight_layers()] == ["Linear"] * 3
    assert hooked.weight_names() == ["features.0", "mid", "head"]


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_metric_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"metrics='soft_rnak'.*rank_torch.*soft_rank"):
        bnexp.measure(mlp(), batch()[0], metrics=["soft_rnak"])


def test_unknown_module_name_lists_the_models_modules():
    with pytest.raises(ConfigError, match=r"modules='layer9'.*modules include: 0, 1, 2, 3"):
        bnexp.measure(mlp(), batch()[0], modules=["layer9"])
    with pytest.raises(ConfigError, match=r"did you mean features"):
        select_modules(Twice(), ["featurs"])


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.spare = nn.Linear(8, 4), nn.ReLU()  # spare: registered, never called

    def forward(self, x):
        return self.fc(x)


def test_no_module_matched_is_a_clear_error():
    linear = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2)).double()
    with pytest.raises(ConfigError, match="no activation module"):
        bnexp.measure(linear, batch()[0])
    with pytest.raises(ConfigError, match="no module of the model is a Conv2d"):
        bnexp.measure(linear, batch()[0], modules=[nn.Conv2d])
    with pytest.raises(ConfigError, match="never ran"):
        bnexp.measure(Unused().double(), batch()[0], modules=["spare"])


def test_grad_norms_need_labels_and_options_are_checked():
    model, (x, y) = mlp(), batch()
    with pytest.raises(ConfigError, match="grad_norms"):
        bnexp.measure(model, x, grad_norms=True)
    with pytest.raises(ConfigError, match="point='mid'"):
        bnexp.measure(model, x, point="mid")
    with pytest.raises(ConfigError, match="tau"):
        bnexp.measure(model, x, tau=2.0)
    with pytest.raises(ConfigError, match="batch"):
        bnexp.measure(model, (x, y, y))


def test_import_bnexp_stays_light():
    code = "import sys, bnexp; assert callable(bnexp.measure); assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)

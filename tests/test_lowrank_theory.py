"""The low-rank paper's theory, checked exactly in float64 (Galanti & Poggio; spec ../shared/specs/lowrank.md §T).

Every check runs on bnexp's own models (``bnexp.nn.build_model``: ``mlp`` = MLP-(BN-)L-H, ``resblock`` =
RES-(BN-)L-H of spec §1.2, ReLU, biases on, PyTorch default init) in float64 on the CPU, with random Gaussian
data: L = 4 hidden layers of width H = 32, input n = 20, k = 10 outputs. Gradients come from autograd; ranks and
singular values from the independent oracle ``np.linalg.svd`` (numerical rank: #{σ_i > 1e-9·σ₁}).

Notation: ℓ̄_S̃ = (1/B) Σ_{j∈S̃} ℓ(f(x_j; X̃), y_j) is the minibatch loss (BN in train mode on the batch X̃) and
L^λ_S̃ = ℓ̄_S̃ + λ Σ_W ‖W‖_F² the paper's regularised objective (Eq. 2: gradient ∇ℓ̄ + 2λW).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnexp.nn import build_model
from bnexp.nn.models import MODELS

D_IN, WIDTH, DEPTH, K = 20, 32, 4, 10
RTOL = 1e-9  # numerical rank: singular values above RTOL·σ₁


def _rank(g: torch.Tensor) -> int:
    """#{σ_i(G) > RTOL·σ₁(G)} by numpy's float64 SVD (0 for G = 0)."""
    s = np.linalg.svd(g.detach().numpy().astype(np.float64), compute_uv=False)
    return int((s > RTOL * s[0]).sum()) if s[0] > 0 else 0


def _model(name: str = "mlp", norm: str = "none", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, d_in=D_IN, width=WIDTH, depth=DEPTH, d_out=K, norm=norm, act="relu", bias=True)
    return model.double().train()


def _data(m: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, D_IN, generator=gen, dtype=torch.float64)
    y = torch.randint(0, K, (m,), generator=gen)
    return x, y


def _loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Spec §1.4: CE, or MSE on one-hot targets (mean over batch × classes)."""
    if loss == "ce":
        return F.cross_entropy(logits, y)
    return F.mse_loss(logits, F.one_hot(y, K).to(logits.dtype))


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every weight matrix, input → output (spec M3's order; the readout last)."""
    return [layer.weight for layer in model.weight_layers()]


def _grads(model, x, y, lam: float = 0.0, loss: str = "ce") -> list[torch.Tensor]:
    """∇_W L^λ_S̃ for every weight matrix W, with L^λ = ℓ̄ + λ Σ_W ‖W‖_F² (paper convention; λ = 0: ∇ℓ̄)."""
    weights = _weights(model)
    objective = _loss(model(x), y, loss)
    if lam:
        objective = objective + lam * sum(w.square().sum() for w in weights)
    return [g.detach() for g in torch.autograd.grad(objective, weights)]


# --- T1: Lemma 1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_per_sample_gradients_have_rank_one(loss):
    """T1 (Lemma 1): in a ReLU MLP without BN, rank ∇_W ℓ(f(x), y) ≤ 1 for every weight matrix W and sample x.

    With W the map a_{ℓ−1} → h_ℓ, ∇_W ℓ = (∂ℓ/∂h_ℓ) a_{ℓ−1}ᵀ = (Σ_c ∂ℓ/∂f_c · u_c) a_{ℓ−1}ᵀ: one outer product
    however many outputs (k = 10) the loss mixes. Control: the minibatch gradient of the same 6 samples,
    (1/B) Σ_j g_j a_jᵀ, has rank 6 > 1 in every layer, so the rank oracle does see more than one direction.
    """
    model = _model()
    x, y = _data(6)
    for i in range(len(x)):
        ranks = [_rank(g) for g in _grads(model, x[i:i + 1], y[i:i + 1], loss=loss)]
        assert ranks == [1] * (DEPTH + 1), (i, ranks)
    assert [_rank(g) for g in _grads(model, x, y, loss=loss)] == [6] * (DEPTH + 1)


# --- T2: batch gradients (Lemma 2's ingredient) ------------------------------------------------------------

# norm → whether it centres over the batch (then Σ_j ∂L/∂h_j = 0 for the layer feeding it).
CENTRES = {"none": False, "bn_torch": True, "bn_center": True, "bn_nocenter": False}


@pytest.mark.parametrize("norm", list(CENTRES))
@pytest.mark.parametrize("batch", [3, 5])
def test_batch_gradient_rank_mlp(batch, norm):
    """T2: rank ∇_W ℓ̄_S̃ ≤ B for every W, with or without BN; ≤ B − 1 for a W whose output feeds a centring BN.

    ∇_W ℓ̄ = Gᵀ A with G = ∂ℓ̄/∂H ∈ R^{B×d_out} (H = A Wᵀ + b, A ∈ R^{B×d_in} the layer's inputs), so rank ≤ B.
    A centring BN (``bn_torch``, mean not detached; ``bn_center``) is invariant to adding a constant to every
    sample of a feature, hence 1ᵀG = 0 and rank G ≤ B − 1 for the hidden layers fc_0 … fc_{L−1}; the readout
    feeds no BN and stays ≤ B. (This B − 1 bound is spec §T's, not the paper's.)

    Controls: without BN, and with the uncentred ``bn_nocenter``, every matrix reaches rank exactly B (the bound
    is attained, so a model with a shared or duplicated weight would be caught); with centring, the hidden
    layers reach exactly B − 1.
    """
    model = _model(norm=norm)
    x, y = _data(batch)
    ranks = [_rank(g) for g in _grads(model, x, y)]
    hidden = batch - 1 if CENTRES[norm] else batch
    assert ranks == [hidden] * DEPTH + [batch], ranks


@pytest.mark.parametrize("norm", ["none", "bn_torch"])
@pytest.mark.parametrize("batch", [3, 5])
def test_batch_gradient_rank_resblock(batch, norm):
    """T2 for RES-(BN-)L-H (``resblock``: stem, blocks z ↦ z + σ(n2(W2 σ(n1(W1 z)))), readout).

    rank ∇_W ℓ̄_S̃ ≤ B for every W. With BN, W1 and W2 feed n1 and n2 (centring) and have rank ≤ B − 1; the stem
    feeds the residual stream z (the skip bypasses every BN) and the readout feeds no BN: both ≤ B. Without BN
    every matrix reaches exactly B (control).
    """
    model = _model("resblock", norm=norm)
    x, y = _data(batch)
    ranks = [_rank(g) for g in _grads(model, x, y)]
    inner = batch - 1 if norm != "none" else batch
    assert ranks == [batch] + [inner] * (2 * DEPTH) + [batch], ranks


def test_shared_block_weights_break_the_batch_rank_bound():
    """Control for T2/T3: the bound needs every matrix to be used once per sample. Sharing one block across the
    depth (the reference code's ``depth*[FCBlock(...)]`` bug, spec §A.6) sums L per-use gradients Σ_b G_bᵀ A_b,
    and the rank exceeds B; ``resblock`` must therefore hold independent blocks, which T2 checks."""
    assert "resblock" in MODELS
    model = _model("resblock", norm="none")
    for i in range(1, DEPTH):
        model.blocks[i] = model.blocks[0]
    x, y = _data(3)
    w1 = model.blocks[0].W1.weight
    grad = torch.autograd.grad(_loss(model(x), y), w1)[0]
    assert _rank(grad) > 3


# --- T3: Theorem 1 -----------------------------------------------------------------------------------------


def _tail(w: torch.Tensor, rank: int) -> float:
    """Eckart–Young: min_{rank V ≤ r} ‖W − V‖_F = sqrt(Σ_{i>r} σ_i(W)²)."""
    s = np.linalg.svd(w.detach().numpy(), compute_uv=False)
    return float(np.sqrt(np.sum(s[rank:] ** 2)))


@pytest.mark.parametrize("model_name,norm", [("mlp", "none"), ("mlp", "bn_torch"), ("resblock", "bn_torch")])
def test_theorem1_rank_distance_bound(model_name, norm):
    """T3 (Theorem 1, Eq. 10 for each batch): for every W and every batch S̃ of size B*,

        sqrt(Σ_{i>B*} σ_i(W)²) ≤ ‖∇_W L^λ_S̃‖_F / (2λ)        (paper convention L^λ = ℓ̄ + λ Σ‖W‖²)

    at an *arbitrary* W, not only at a stationary point — which is why random batches at a random init test it:
    ∇_W L^λ_S̃ = ∇_W ℓ̄_S̃ + 2λW, so W − U = ∇_W L^λ_S̃ / (2λ) with U := −∇_W ℓ̄_S̃ / (2λ), and rank U ≤ B* (T2,
    BN in train mode on S̃ included); Eckart–Young then gives dist_{B*}(W) ≤ ‖W − U‖_F = ‖∇_W L^λ_S̃‖_F / (2λ).
    Checked over 4 random batches × λ ∈ {1e-3, 0.1, 100}, tolerance (1 + 1e-9). The witness U is checked too.

    Control: the bound is close to tight at large λ (it tends to ‖W‖_F, and dist_{B*}(W) ≈ 0.6–0.8 ‖W‖_F for
    these random matrices), so the torch convention's ‖∇ℓ̄ + λW‖_F / (2λ) ≈ ‖W‖_F / 2 (a wrong λ factor)
    violates it.
    """
    model = _model(model_name, norm=norm)
    x, y = _data(64)
    b_star = 4
    gen = torch.Generator().manual_seed(2)
    wrong_convention_fails = False
    for _ in range(4):
        idx = torch.randperm(len(x), generator=gen)[:b_star]
        loss_grads = _grads(model, x[idx], y[idx])
        for lam in (1e-3, 0.1, 100.0):
            for w, g, g_lam in zip(_weights(model), loss_grads, _grads(model, x[idx], y[idx], lam=lam)):
                tail, bound = _tail(w, b_star), float(g_lam.norm()) / (2 * lam)
                assert tail <= bound * (1 + 1e-9), (lam, tail, bound)
                witness = -g / (2 * lam)
                assert _rank(witness) <= b_star
                assert float((w.detach() - witness).norm()) == pytest.approx(bound, rel=1e-9)
                torch_bound = float((g + lam * w.detach()).norm()) / (2 * lam)
                wrong_convention_fails |= tail > torch_bound
    assert wrong_convention_fails


# --- T4: Proposition 1 sanity (SGD noise) ------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["none", "bn_torch"])
def test_batches_differing_in_one_sample_have_different_gradients(norm):
    """T4 (Eqs. 6–9, Prop 1): if all batch gradients ∇L^λ_S̃ were equal (SGD converged), a λ > 0 ReLU network
    would be the zero function or the data collinear. So for a λ > 0 network that has not collapsed, on
    non-collinear data, two batches S̃, S̃' differing in one sample have ∇_W L^λ_S̃ ≠ ∇_W L^λ_S̃' (without BN
    the difference is (1/B)(∇ℓ(x_new) − ∇ℓ(x_old))): the SGD noise is > 0.

    The network is trained first (200 full-batch gradient steps of L^λ, λ = 1e-3, η = 0.1). Checked: f ≢ 0
    and rank X > 1 (the premise), then ‖∇_W L^λ_S̃ − ∇_W L^λ_S̃'‖_F > 1e-3 ‖∇_W L^λ_S̃‖_F for every W. Control:
    a permutation of S̃ gives the same gradient to 1e-12, so the comparison separates equal from unequal.
    """
    model = _model(norm=norm)
    x, y = _data(64)
    lam, lr = 1e-3, 0.1
    params = list(model.parameters())
    for _ in range(200):
        objective = _loss(model(x), y) + lam * sum(w.square().sum() for w in _weights(model))
        with torch.no_grad():
            for p, g in zip(params, torch.autograd.grad(objective, params)):
                p -= lr * g
    with torch.no_grad():
        assert float(model(x).norm()) > 1.0  # not collapsed to f ≡ 0
    assert np.linalg.matrix_rank(x.numpy()) > 1  # not collinear

    batch = torch.arange(8)
    other = batch.clone()
    other[3] = 40  # one sample replaced
    base = _grads(model, x[batch], y[batch], lam=lam)
    swapped = _grads(model, x[other], y[other], lam=lam)
    permuted = _grads(model, x[batch.flip(0)], y[batch.flip(0)], lam=lam)
    for g, g_other, g_perm in zip(base, swapped, permuted):
        assert float((g - g_other).norm()) > 1e-3 * float(g.norm())
        assert float((g - g_perm).norm()) <= 1e-12 * float(g.norm())

"""Figures of "Towards Training Without Depth Limits: Batch Normalization Without Gradient Explosion" (Meterez,
Joudaki, Orabona, Immer, Rätsch, Daneshmand; ICLR 2024).

Families: :mod:`.isometry` (fig1, the isometry gap decays with depth), :mod:`.gradients` (fig2, fig3, figH6:
ln‖∇_{W_1} L‖ against depth), :mod:`.shaping` (fig5, activation shaping), :mod:`.activations` (figH5,
nonlinearities without gain), :mod:`.residual` (figJ1, residual networks with Gaussian weights), :mod:`.rates`
(figF1, figF2, the explosion rate against the gain), :mod:`.inputs` (tableE1, the numerical rank of input batches);
training (``configs/exp/depth_train.yaml``, shared runs): :mod:`.training` (fig4, figH1–H4, train and test accuracy
of shaped BN MLPs of depth 100–1000), :mod:`.implicit` (fig6, figG1, figG2, φ(W_ℓ) and ‖∇W_ℓ‖ per layer during
training: the implicit orthogonality bias of SGD).

The init-time figures are sweeps of ``bnexp train`` with ``optim.epochs = 0`` on the experiments that include
``configs/exp/depth_init_base.yaml``: the paper's setup, d = n = 100 on one CIFAR-10 training batch
(``data.root``), depths up to 1000. Quick and smoke scales swap in :data:`QUICK`: d = n = 32 on one Gaussian
batch in 64 dimensions, depths up to 200 (no dataset needed, seconds on a CPU).
"""

from __future__ import annotations

from bnexp.figures import RunGrid

QUICK_DEPTHS = [5, 10, 20, 50, 100, 200]
SMOKE_DEPTHS = [5, 20, 100, 200]
# The quick stand-in for the paper's CIFAR-10 batch: one Gaussian batch of n = 32 samples in 64 dimensions
# (data.seed 0 in the experiment: the same batch at every depth and seed, as the paper reuses its batch), d = n.
QUICK = {"data": "gaussian", "data.dim": 64, "data.n_train": 32, "data.n_test": 1, "data.batch_size": 32,
         "model.width": 32}
SMOKE = {**QUICK, "n_seeds": 4}
# ln‖∇W_1‖ per layer of depth without gain (depth/fig5 and figH5): claimed range and the paper's plot
SLOPES_NO_GAIN = {"sin": (0.11, 0.16, "≈ 0.13/layer (13 at L = 100, 26.5 at 200)"),
                  "tanh": (0.065, 0.11, "≈ 0.08/layer (8 at L = 100, 42 at 500)")}


def depth_runs(exp: str, quick_grid: dict | None = None, smoke_grid: dict | None = None) -> dict:
    """Runs per scale of a sweep over depth: the experiment as it is at paper scale, :data:`QUICK` with the
    quick depths, :data:`SMOKE` with the smoke depths (plus any other grid keys of the smaller scales)."""
    return {"paper": {"runs": RunGrid(exp)},
            "quick": {"runs": RunGrid(exp, QUICK, {"model.depth": QUICK_DEPTHS, **(quick_grid or {})})},
            "smoke": {"runs": RunGrid(exp, SMOKE, {"model.depth": SMOKE_DEPTHS, **(smoke_grid or {})})}}

"""lowrank/fig2, fig4, fig5: the average rank of the trained weight matrices falls with the batch size B (and
rises back with a smaller learning rate) — MLP-BN-10-100 (fig2), RES-BN-5-500 (fig4), MLP-5-500 without BN (fig5).

Paper setup (``configs/exp/lowrank_batch.yaml``, ``lowrank_res_batch.yaml``, ``lowrank_mlp_batch.yaml``): CIFAR-10,
SGD with momentum 0.9, λ = 5e-4, B ∈ {4, …, 128}, initial lr ∈ {0.001, 0.01, 0.1}, 500 epochs, lr × 0.1 at epochs
60/100/200. Quick (spec lowrank Fig 2, 4, 5 "quick variant"): width 64, depth 5, 2 000 Fashion-MNIST images, 30
epochs, B ∈ {8, 32, 128}, ε = 1e-3, and the spec's calibrated lr and λ per network. The average rank (M2) is over
every weight matrix but the readout (stem and block matrices for the residual network).
"""

from __future__ import annotations

import numpy as np

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.lowrank import FMNIST_2000, PROTO, QUICK_NET, final_by, rank_and_accuracy

QUICK_B = [8, 32, 128]
SMOKE_B = [8, 128]


def runs(exp: str, quick: dict, smoke: dict, lr_check: dict | None = None) -> dict:
    """The B sweep of ``exp`` per scale and, for fig2, the learning-rate check at one B (``lr_check``: the quick
    and smoke overrides of that check; at paper scale it is the B = 16 column of the paper's own grid)."""
    out = {
        "paper": {"batch": RunGrid(exp)},
        "quick": {"batch": RunGrid(exp, {**FMNIST_2000, **QUICK_NET, **quick}, {"data.batch_size": QUICK_B})},
        "smoke": {"batch": RunGrid(exp, {**PROTO, **QUICK_NET, **smoke}, {"data.batch_size": SMOKE_B})},
    }
    if lr_check is not None:
        out["paper"]["lr"] = RunGrid(exp, {"data.batch_size": 16})
        for scale, base, data in (("quick", quick, FMNIST_2000), ("smoke", smoke, PROTO)):
            fixed = {k: v for k, v in {**data, **QUICK_NET, **base}.items() if k != "optim.lr"}  # the lr is swept
            out[scale]["lr"] = RunGrid(exp, {**fixed, "data.batch_size": 16}, {"optim.lr": lr_check[scale]})
    return out


def plot(title: str):
    def draw(frames, scale):
        batch = frames["batch"]
        lrs = sorted(batch["optim.lr"].unique())
        columns = [("data.batch_size", batch, lr, "B = {:g}") for lr in lrs]
        if "lr" in frames:
            columns.append(("optim.lr", frames["lr"], None, "lr = {:g}"))
        fig, axes = style.new_figure(ncols=len(columns), nrows=2, width=3.3)
        for col, (key, df, lr, fmt) in enumerate(columns):
            sub = df if lr is None else stats.pick(df, optim__lr=lr)
            top, bottom = axes[col], axes[len(columns) + col]
            heading = (f"{title}, lr = {lr:g} ({scale})" if lr is not None
                       else f"{title}, B = {int(sub['data.batch_size'].iloc[0])} ({scale})")
            rank_and_accuracy(top, bottom, sub, key, fmt.format, heading)
        return fig

    return draw


def batch_claims(frames, *, gap: float, slack: float | None) -> list[Claim]:
    """Per learning rate of the B sweep: rank(B_max) − rank(B_min) > ``gap``, and (unless ``slack`` is None) every
    rise between consecutive B above −``slack`` (0: the rank strictly grows with B)."""
    out = []
    batch = frames["batch"]
    for lr in sorted(batch["optim.lr"].unique()):
        ranks = final_by(stats.pick(batch, optim__lr=lr), "avg_rank", "data.batch_size")
        b_lo, b_hi = int(ranks.index.min()), int(ranks.index.max())
        out.append(Claim.above(f"lr {lr:g}: avg rank at B = {b_hi} minus at B = {b_lo}",
                               float(ranks.iloc[-1] - ranks.iloc[0]), gap,
                               "smaller batches give lower rank (Thm 1, C2)"))
        if slack is not None and len(ranks) > 2:
            out.append(Claim.above(f"lr {lr:g}: smallest rise of avg rank between consecutive B",
                                   float(np.diff(ranks.to_numpy()).min()), -slack,
                                   "the rank grows with B" + (f" (slack {slack:g})" if slack else "")))
    return out


def lr_claims(frames) -> list[Claim]:
    """At one B: the average rank falls as the learning rate grows, and the largest rate trains worst."""
    df = frames["lr"]
    ranks = final_by(df, "avg_rank", "optim.lr")
    acc = final_by(df, "train_full_acc", "optim.lr")
    return [
        Claim.below("largest rise of avg rank between consecutive learning rates",
                    float(np.diff(ranks.to_numpy()).max()), 0.0, "larger lr gives lower rank (C2)"),
        Claim.below(f"train accuracy at lr {acc.index.max():g} minus at lr {acc.index.min():g}",
                    float(acc.iloc[-1] - acc.iloc[0]), 0.0, "large lr with a small B hurts training (C2)"),
    ]


def claims_fig2(frames, scale):
    # spec Fig 2 quick: rank(8) < rank(32) ≤ rank(128) + 0.5 and rank(8) ≤ rank(128) − 5
    return batch_claims(frames, gap=5.0, slack=0.5) + lr_claims(frames)


def claims_fig4(frames, scale):
    # spec Fig 4 quick ("weak"): only rank(8) < rank(128); the drop is mostly the stem's
    return batch_claims(frames, gap=0.0, slack=None)


def claims_fig5(frames, scale):
    # spec Fig 5 quick: rank(8) < rank(32) < rank(128)
    return batch_claims(frames, gap=5.0, slack=0.0)


# The spec's calibrated quick variants (lowrank §3): per network its lr and λ; 30 epochs, ε = 1e-3 throughout.
QUICK = {"optim.epochs": 30, "probe.rank_eps": 1e-3}
SMOKE = {"optim.epochs": 6, "probe.rank_eps": 1e-3}
FIG2_RUNS = runs("lowrank_batch", {**QUICK, "optim.lr": 0.05, "optim.weight_decay": 5e-3},
                 {**SMOKE, "optim.lr": 0.05, "optim.weight_decay": 0.1},
                 lr_check={"quick": [0.01, 0.05, 0.2], "smoke": [0.01, 0.05, 0.2]})
FIG4_RUNS = runs("lowrank_res_batch", {**QUICK, "model.width": 64, "optim.lr": 0.01, "optim.weight_decay": 2e-2},
                 {**SMOKE, "model.width": 64, "optim.lr": 0.01, "optim.weight_decay": 0.2})
FIG5_RUNS = runs("lowrank_mlp_batch", {**QUICK, "optim.lr": 0.05, "optim.weight_decay": 5e-3},
                 {**SMOKE, "optim.lr": 0.05, "optim.weight_decay": 0.1})

SCALES_NOTE = (
    "Paper scale: CIFAR-10, λ = 5e-4, B ∈ {4, 8, 16, 32, 64, 128}, lr ∈ {0.001, 0.01, 0.1} (one column each), "
    "500 epochs, lr × 0.1 after epochs 60/100/200, momentum 0.9, torch-convention weight decay on every parameter, "
    "ε = 1e-4; the paper-scale claims (the same comparisons at every lr) have not been run here. Quick: 2 000 "
    "Fashion-MNIST training images, width 64, depth 5, 30 epochs, B ∈ {8, 32, 128}, ε = 1e-3 and the spec's "
    "calibrated lr and λ (the paper's λ = 5e-4 lowers no rank in a quick budget). Average rank = mean normalised "
    "numerical rank of every weight matrix but the readout; accuracy on the full train (eval mode, solid) and "
    "test (dashed) splits.")
FIG2_CAPTION = (
    "Average rank and accuracy vs epoch, MLP-BN (Linear → BatchNorm → ReLU), one line per batch size; the last "
    "column varies the learning rate at B = 16. " + SCALES_NOTE + " Quick: lr 0.05, λ = 5e-3; the lr column "
    "lr ∈ {0.01, 0.05, 0.2}. The claims are the spec's: rank(8) < rank(32) ≤ rank(128) + 0.5, rank(8) ≤ "
    "rank(128) − 5, rank falling with lr and the largest lr training worst.")
FIG4_CAPTION = (
    "Average rank and accuracy vs epoch, RES-BN (stem Linear without norm or ReLU, blocks z + ReLU(BN(W2 ReLU(BN("
    "W1 z)))), readout), one line per batch size. " + SCALES_NOTE + " Quick: width 64, lr 0.01, λ = 2e-2 (lr 0.05 "
    "diverges at B ≤ 32: the residual stream grows). At quick scale, B = 8: weight decay on every parameter "
    "shrinks the blocks' matrices and their BN scales γ together (‖W‖_F falls ≈ 0.6× an epoch, the rate of the "
    "decay alone), the blocks switch off and the network becomes stem → readout (train accuracy ≈ 0.78, stem rank "
    "≈ 10); from about epoch 22 the block matrices fall below 1e-4 of their initial norm and count as rank 0 "
    "(the collapse rule, probe.zero_rtol), so the average rank ends near 1. Their scale-free normalised rank stays "
    "56–63 (probe.zero_rtol=0: average ≈ 55–56 over seeds, the spec's planning figure of 57.4); with wd_on="
    "weights_only the blocks survive at full rank. B = 32 and 128 keep every block (62.6, 63.7). The claim is the "
    "spec's: rank(8) < rank(128).")
FIG5_CAPTION = (
    "Average rank and accuracy vs epoch, MLP without BN (Linear → ReLU), one line per batch size. " + SCALES_NOTE
    + " Quick: lr 0.05, λ = 5e-3: at B = 8 the network dies (train accuracy ≈ 0.1, rank ≈ 6): the paper's "
    "'too large a lr for a small B gives low rank and poor training'. The claim: rank(8) < rank(32) < rank(128).")
BATCH_COSTS = dict(quick="≈ 45 s, 2-core CPU", data="CIFAR-10 (quick: Fashion-MNIST, 2 000 images)")
FIG2_COSTS = Costs(paper="≈ 3–6 GPU-h, 1 GPU (spec estimate)", **BATCH_COSTS,
                   basis="Spec lowrank Fig 2: 18 runs, 500 epochs, ≈ 37 M SGD steps in all, launch-bound at "
                         "≈ 0.3–0.6 ms/step on a GPU (not measured: no GPU here). On a CPU thread (make "
                         "cost-lowrank): 29 h one run at a time, 20 h in stacked groups.")
FIG4_COSTS = Costs(paper="≈ 8–12 GPU-h, 1 GPU (spec estimate)", **BATCH_COSTS,
                   basis="Spec lowrank Fig 4: 18 runs of RES-BN-5-500 (4.1 M parameters), ≈ 37 M steps in all; "
                         "on a CPU thread (make cost-lowrank) 178 h one run at a time, 162 h stacked.")
FIG5_COSTS = Costs(paper="≈ 6–10 GPU-h, 1 GPU (spec estimate)", **BATCH_COSTS,
                   basis="Spec lowrank Fig 5: 18 runs of MLP-5-500 (2.5 M parameters), ≈ 37 M steps in all; on "
                         "a CPU thread (make cost-lowrank) 96 h one run at a time, 82 h stacked.")
ROWS = ("In the (top) row we plot the average rank across layers during training and in the (bottom) row we plot "
        "the train and test accuracy rates for each setting.")

register(
    Figure("lowrank/fig2", "Average rank vs batch size and learning rate, MLP-BN", FIG2_CAPTION, FIG2_RUNS,
           plot("MLP-BN"), claims_fig2, kind="train",
           paper_caption=PaperCaption("Figure 2", "Average rank of MLP-BN-10-100 trained on CIFAR10 with varying "
                                      "batch sizes. Each line stands for the results of a different batch size. "
                                      + ROWS), costs=FIG2_COSTS),
    Figure("lowrank/fig4", "Average rank vs batch size, RES-BN", FIG4_CAPTION, FIG4_RUNS, plot("RES-BN"),
           claims_fig4, kind="train",
           paper_caption=PaperCaption("Figure 4", "Average rank of RES-BN-5-500 trained on CIFAR10 with varying "
                                      "batch sizes. Each line stands for the results of a different value of batch "
                                      "size. " + ROWS), costs=FIG4_COSTS),
    Figure("lowrank/fig5", "Average rank and accuracy vs batch size, MLP without BN", FIG5_CAPTION, FIG5_RUNS,
           plot("MLP"), claims_fig5, kind="train",
           paper_caption=PaperCaption("Figure 5", "Average ranks and accuracy rates of MLP-5-500 trained on CIFAR10 "
                                      "with varying batch sizes. Each line stands for the results of a different "
                                      "value of batch size. " + ROWS), costs=FIG5_COSTS),
)

"""lowrank/fig6, fig7: ranks across layers at the end of training — MLP-BN learns a bottleneck (fig6), residual
networks balance the ranks of their block matrices (fig7) (claim C3, App. A).

Paper setup (``configs/exp/lowrank_layers_mlp.yaml``, ``lowrank_layers_res.yaml``): MLP-BN-10-100 and RES-BN-5-500
on CIFAR-10, λ = 5e-4, B ∈ {32, 64, 128}, initial lr ∈ {0.0125, 0.025, 0.05, 0.1} (one panel each), 500 epochs.
Quick (spec lowrank Fig 6, 7 "quick variant"): MLP-BN-10-64 and RES-5-64 (no BN: with BN the blocks stay near full
rank, trivially balanced) on 2 000 Fashion-MNIST images, 30 epochs, an active constraint (small B, large lr, λ =
1e-2) against an inactive one (B = 128, small lr).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.lowrank import FMNIST_2000, PROTO

QUICK = {**FMNIST_2000, "model.width": 64, "optim.epochs": 30, "optim.weight_decay": 1e-2, "probe.rank_eps": 1e-3,
         "probe.spectra": False}
SMOKE = {**PROTO, "model.width": 32, "optim.epochs": 6, "optim.weight_decay": 0.2, "probe.rank_eps": 1e-3,
         "probe.spectra": False}
FIG6_RUNS = {
    "paper": {"runs": RunGrid("lowrank_layers_mlp")},
    "quick": {"runs": RunGrid("lowrank_layers_mlp", QUICK, {"data.batch_size": [16, 128], "optim.lr": [0.0125, 0.05]})},
    "smoke": {"runs": RunGrid("lowrank_layers_mlp", {**SMOKE, "model.depth": 6},
                              {"data.batch_size": [16, 128], "optim.lr": [0.0125, 0.05]})},
}
FIG7_RUNS = {
    "paper": {"runs": RunGrid("lowrank_layers_res")},
    "quick": {"runs": RunGrid("lowrank_layers_res", {**QUICK, "norm": "none"},
                              {"data.batch_size": [8, 128], "optim.lr": [0.01]})},
    "smoke": {"runs": RunGrid("lowrank_layers_res", {**SMOKE, "norm": "none", "model.depth": 3,
                                                     "optim.weight_decay": 0.15, "optim.epochs": 9},
                              {"data.batch_size": [8, 128], "optim.lr": [0.01]})},
}


def profiles(df: pd.DataFrame) -> pd.DataFrame:
    """The final rank of every weight matrix but the readout: columns run, B, lr, layer, value."""
    sub = stats.at_step(stats.pick(df, "weight_rank"), "last")
    sub = sub[sub["layer"] < sub.groupby("run")["layer"].transform("max")]  # the readout is the last matrix
    return sub[["run", "data.batch_size", "optim.lr", "layer", "value"]]


def plot(title: str, xlabel: str):
    def draw(frames, scale):
        prof = profiles(frames["runs"])
        lrs = sorted(prof["optim.lr"].unique())
        fig, axes = style.new_figure(ncols=len(lrs), width=3.3)
        for ax, lr in zip(axes, lrs):
            style.bands(ax, prof[prof["optim.lr"] == lr], "layer", "data.batch_size", label="B = {:g}".format)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("rank at the end of training")
            ax.set_title(f"{title}, lr = {lr:g} ({scale})")
            style.legend(ax)
        return fig

    return draw


def _active_inactive(prof: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The profiles of the most constrained run (smallest B, then largest lr) and the least (largest B, smallest lr)."""
    key = prof.groupby("run")[["data.batch_size", "optim.lr"]].first()
    active = key.sort_values(["data.batch_size", "optim.lr"], ascending=[True, False]).index[0]
    inactive = key.sort_values(["data.batch_size", "optim.lr"], ascending=[False, True]).index[0]
    by_run = {run: g.set_index("layer")["value"].sort_index() for run, g in prof.groupby("run")}
    return by_run[active], by_run[inactive]


def _common(prof: pd.DataFrame, frames, n_layers: int, what: str) -> list[Claim]:
    width = float(frames["runs"]["model.width"].iloc[0])
    lengths = prof.groupby("run")["layer"].nunique()
    active, inactive = _active_inactive(prof)
    return [
        Claim.within(f"matrices per profile (every run) minus the {what}", float(lengths.min() - n_layers),
                     0, 0, "one rank per hidden matrix"),
        Claim.within("ranks as a fraction of the width (every run, every matrix)", float(prof["value"].max() / width),
                     0, 1, "ranks lie in [0, H]"),
        Claim.above("mean rank of the least minus the most constrained run (largest B and smallest lr vs smallest B "
                    "and largest lr)", float(inactive.mean() - active.mean()), 5.0,
                    "the constraint (small B, large lr) lowers the ranks; without it they stay near full"),
    ]


def claims_fig6(frames, scale):
    prof = profiles(frames["runs"])
    depth = int(frames["runs"]["model.depth"].iloc[0])
    out = _common(prof, frames, depth, "depth")
    if scale == "paper":  # the bottleneck needs the full run (spec: the quick variant does not show it)
        active, _ = _active_inactive(prof)
        middle = active.iloc[1:-1]
        out.append(Claim.above("most constrained run: min(first, last layer rank) minus the middle layers' median",
                               float(min(active.iloc[0], active.iloc[-1]) - np.median(middle)), 0.0,
                               "a bottleneck: bottom and top layers above the middle ones"))
    return out


def claims_fig7(frames, scale):
    prof = profiles(frames["runs"])
    depth = int(frames["runs"]["model.depth"].iloc[0])
    width = float(frames["runs"]["model.width"].iloc[0])
    out = _common(prof, frames, 1 + 2 * depth, "stem and 2 × blocks")
    active, _ = _active_inactive(prof)
    blocks = active.iloc[1:]  # the stem is matrix 0
    out.append(Claim.at_most("most constrained run: (max − min) over the block matrices' ranks, over the width",
                             float((blocks.max() - blocks.min()) / width), 0.5,
                             "ResNets balance the ranks of their residual blocks"))
    return out


SCALES = ("Paper scale: CIFAR-10, λ = 5e-4, B ∈ {32, 64, 128} (a line each), lr ∈ {0.0125, 0.025, 0.05, 0.1} (a "
          "panel each), momentum 0.9, 500 epochs (unstated in the paper; spec §A.13), ε = 1e-4; not run here. "
          "Quick: 2 000 Fashion-MNIST images, width 64, λ = 1e-2, 30 epochs, ε = 1e-3.")
FIG6_CAPTION = (
    "Normalised numerical rank of each hidden weight matrix (x: layer index; the readout left out) at the end of "
    "training, MLP-BN (Linear → BatchNorm → ReLU). " + SCALES + " Quick: MLP-BN-10-64, B ∈ {16, 128}, lr ∈ "
    "{0.0125, 0.05}. The quick scale does NOT show the paper's bottleneck (spec: lowest at the bottom, rising to "
    "the top); its claims check what it can: one rank per layer within [0, H], and that the constraint (small B, "
    "large lr) lowers the ranks. The bottleneck claim is made at paper scale only.")
FIG7_CAPTION = (
    "Normalised numerical rank of each weight matrix (x: 0 = the stem, then block 1 W1, W2, …; the readout left "
    "out) at the end of training, residual network. " + SCALES + " Quick: RES-5-64 WITHOUT BN (the caption's "
    "RES-5-500; with BN the quick blocks stay at 62–63 of 64, trivially balanced, spec), B ∈ {8, 128}, lr 0.01. "
    "Claims: one rank per matrix within [0, H], the constraint lowers the ranks, and under it the block matrices' "
    "ranks span at most half the width (the spec's weak balance check).")
FIG6_COSTS = Costs(quick="≈ 30 s, 2-core CPU", paper="≈ 1 GPU-h, 1 GPU (spec estimate)",
                   data="CIFAR-10 (quick: Fashion-MNIST, 2 000 images)",
                   basis="Spec lowrank Fig 6: 12 runs, ≈ 5.5 M SGD steps in all; on a CPU thread (make cost-lowrank) "
                         "6.6 h one run at a time, 5.0 h stacked.")
FIG7_COSTS = Costs(quick="≈ 25 s, 2-core CPU", paper="≈ 1.5–2 GPU-h, 1 GPU (spec estimate)",
                   data="CIFAR-10 (quick: Fashion-MNIST, 2 000 images)",
                   basis="Spec lowrank Fig 7: 12 runs of RES-BN-5-500, ≈ 5.5 M SGD steps in all; on a CPU thread "
                         "(make cost-lowrank) 40 h one run at a time, 39 h stacked.")
AXES = ("The x-axis specifies the layer's index and the y-axis stands for the rank of the given matrix.")

register(
    Figure("lowrank/fig6", "Ranks across layers, MLP-BN", FIG6_CAPTION, FIG6_RUNS,
           plot("MLP-BN", "layer index"), claims_fig6, kind="train",
           paper_caption=PaperCaption("Figure 6", "Ranks across layers of MLP-BN-10-100 trained on CIFAR10 with "
                                      "varying learning rates and batch sizes. " + AXES + " As can be seen, MLPs "
                                      "are inductively biased towards learning a bottleneck."), costs=FIG6_COSTS),
    Figure("lowrank/fig7", "Ranks across layers, residual network", FIG7_CAPTION, FIG7_RUNS,
           plot("RES", "matrix index (0 = stem)"), claims_fig7, kind="train",
           paper_caption=PaperCaption("Figure 7", "Ranks across layers of RES-5-500 trained on CIFAR10 with varying "
                                      "learning rates and batch sizes. " + AXES + " As can be seen, ResNets are "
                                      "inductively biased to balance the rank of their residual blocks."),
           costs=FIG7_COSTS),
)

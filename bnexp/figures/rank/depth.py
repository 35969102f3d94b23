"""rank/fig1: the effect of depth on the rank at initialisation and on learning (markov/fig5 shows the same runs).

ReLU MLPs of width 128 on Fashion-MNIST with 1 to 33 hidden layers, vanilla against BN (the released code's BN:
unbiased std, no eps, no affine, batch statistics always), trained with SGD at a grid-searched learning rate
(configs/exp/rank_learn_depth.yaml). Left: rank_torch of the last hidden layer at initialisation, which collapses
to 1 for deep vanilla nets and stays full with BN; right: the final training accuracy, chance for deep vanilla nets.
"""

from __future__ import annotations

import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.rank import FMNIST_SUB, GREY_PROTO
from bnexp.figures.stats import at_step, last_layer, mean_over_seeds, pick

FIG1_BASE = {"data.sampling": "replacement", "model.width": 128, "data.batch_size": 128}
FIG1_RUNS = {
    "paper": {"runs": RunGrid("rank_learn_depth")},
    "quick": {"runs": RunGrid("rank_learn_depth",
                              {**FIG1_BASE, **FMNIST_SUB, "data.n_train": 6000, "data.n_test": 1000,
                               "optim.epochs": 12, "optim.steps_per_epoch": 50, "optim.lr_grid": [0.01, 0.1],
                               "n_seeds": 3},
                              {"norm": ["none", "bn_code_fig1"], "model.depth": [1, 5, 9, 13, 17, 25]})},
    "smoke": {"runs": RunGrid("rank_learn_depth",
                              {**FIG1_BASE, **GREY_PROTO, "data.n_train": 2000, "data.n_test": 500,
                               "optim.epochs": 6, "optim.steps_per_epoch": 25, "optim.lr_grid": [0.1],
                               "n_seeds": 2},
                              {"norm": ["none", "bn_code_fig1"], "model.depth": [1, 17]})},
}
NORMS = (("none", "SGD w/o BN"), ("bn_code_fig1", "SGD w/ BN"))


def by_depth(df: pd.DataFrame, metric: str, norm: str, which: str) -> pd.DataFrame:
    """Rows of ``metric`` at each run's first or last logged step (the last hidden layer for a rank)."""
    sub = at_step(pick(df, metric, norm__name="bn_center" if norm == "bn_code_fig1" else norm), which)
    return last_layer(sub) if metric.startswith("rank") else sub


def plot_fig1(frames, scale):
    df = frames["runs"]
    fig, axes = style.new_figure(ncols=2)
    for norm, label in NORMS:
        for ax, metric, which in ((axes[0], "rank_torch", "first"), (axes[1], "train_acc", "last")):
            style.band(ax, stats.summarize(by_depth(df, metric, norm, which), "model.depth"), "model.depth",
                       kind="norm", name=norm, label=label)
    axes[0].set_ylabel("rank of last hidden layer (init)")
    axes[1].set_ylabel("final training accuracy")
    for ax in axes:
        ax.set_xlabel("number of hidden layers")
        style.legend(ax)
    axes[0].set_title(f"rank_torch at initialisation ({scale})")
    axes[1].set_title(f"after training ({scale})")
    return fig


def claims_fig1(frames, scale):
    df = frames["runs"]
    depths = sorted(df["model.depth"].unique())
    shallow, deep = depths[0], depths[-1]
    full = min(int(df["model.width"].iloc[0]), int(df["data.batch_size"].iloc[0]))

    def value(metric, norm, depth, which):
        sub = by_depth(df, metric, norm, which)
        return mean_over_seeds(sub[sub["model.depth"] == depth])

    bn_rank = min(value("rank_torch", "bn_code_fig1", d, "first") for d in depths)
    collapse_depth = 15 if scale == "paper" else deep  # the paper: rank 1 from hl = 14 (15 hidden layers) on
    van_deep_rank = max(value("rank_torch", "none", d, "first") for d in depths if d >= collapse_depth)
    dead = 13 if scale == "paper" else deep  # the paper: vanilla accuracy ≈ 0.10 from hl = 12 on
    van_deep_acc = max(value("train_acc", "none", d, "last") for d in depths if d >= dead)
    # the spec's calibrated quick check is BN at hl = 16 (depth 17) after 600 steps; at paper scale the deepest net
    bn_depth = deep if scale == "paper" else max(d for d in depths if d <= 17)
    bn_deep_acc = value("train_acc", "bn_code_fig1", bn_depth, "last")
    return [
        Claim.at_least("vanilla: rank at init of the shallowest net, over min(width, batch)",
                       value("rank_torch", "none", shallow, "first") / full, 0.9, "≈ 125 of 128 at hl = 0"),
        Claim.at_most(f"vanilla: largest rank at init for depth ≥ {collapse_depth}", van_deep_rank, 1.0,
                      "rank 1 from hl = 14 on"),
        Claim.at_least("BN: smallest rank at init over all depths, over min(width, batch)", bn_rank / full, 0.95,
                       "≈ 128 everywhere"),
        Claim.at_least("vanilla: final training accuracy of the shallowest net",
                       value("train_acc", "none", shallow, "last"), 0.8, "0.93–0.97 for hl ≤ 8"),
        Claim.at_most(f"vanilla: best final training accuracy at depth ≥ {dead} (chance = 0.1)", van_deep_acc, 0.2,
                      "≈ 0.10 for hl ≥ 12: cannot learn"),
        Claim.at_least(f"BN: final training accuracy at depth {bn_depth}", bn_deep_acc,
                       0.85 if scale == "paper" else 0.8, "≈ 0.93 at hl = 32"),
    ]


FIG1_CAPTION = (
    "Left: rank_torch (float32 matrix_rank of H/‖H‖_F) of the last hidden layer at initialisation on the first "
    "minibatch; right: training accuracy after training (the running accuracy of the last logged epoch's "
    "minibatches; the code used 1000 random training samples), vs the number of hidden layers, ReLU MLP with "
    "torch_default init; mean and 95% CI over seeds. BN is the code's (unbiased std, no eps, no affine, batch "
    "statistics always); vanilla Linear layers have biases (BN nets too: centred BN cancels them exactly). "
    "Minibatches of 128 drawn with replacement. Optimiser: SGD with the learning rate picked per seed from a grid by "
    "the lowest final training loss (the paper's text; its code used Adam for BN). Paper scale: Fashion-MNIST /255, "
    "width 128, 75 epochs × 468 steps, lr grid {1e-3, 1e-2, 1e-1}, 5 seeds. Quick: real Fashion-MNIST, 6000 "
    "training images, 12 × 50 steps, lr grid {0.01, 0.1}, 3 seeds. Smoke: synthetic 14×14 prototype images.")

FIG1_PAPER_CAPTION = PaperCaption("Figure 1", (
    "Effect of depth on rank and learning, on the Fashion-MNIST dataset with ReLU multilayer perceptrons (MLPs) of "
    "depth 1-32 and width 128 hidden units. Left: Rank after random initialization as in PyTorch [22]. Right: "
    "Training accuracy after training 75 epochs with SGD, batch size 128 and grid-searched learning rate. Mean and "
    "95% confidence interval of 5 independent runs."))
FIG1_COSTS = Costs(
    quick="≈ 3.4 min, 2-core CPU", paper="≈ 6–10 GPU-h, 1×A100-class (spec est.), 34 runs", data="Fashion-MNIST",
    basis="Spec estimate (rank_markov.md, 000 Fig 1: 6–10 GPU-h with the lr grid) checked against the grid: 34 runs "
          "= 17 depths × {vanilla, BN}, each 5 seeds × 3 learning rates × 35 100 SGD steps (510 trainings, 17.9 M "
          "steps) of a width-128 MLP at ~1–2 ms/step (launch-bound), one job ≈ 10–35 min by depth; CPU reference "
          "measured here: 4–8.5 ms/step at depth 17 on 2 cores, ≈ 30 CPU-h in all.")

register(Figure("rank/fig1", "Effect of depth on rank (init) and learning, Fashion-MNIST MLP", FIG1_CAPTION, FIG1_RUNS,
                plot_fig1, claims_fig1, kind="train", paper_caption=FIG1_PAPER_CAPTION, costs=FIG1_COSTS))

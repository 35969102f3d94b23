"""rank/fig6: layer-wise rank pre-training and the asymmetric init on a deep Fashion-MNIST MLP (markov/fig6 shows
the same runs).

A vanilla ReLU MLP of 32 hidden layers without and with layer-wise pre-training (25 and 75 iterations per layer,
each raising r(H_k) of the layers k ≤ ℓ), and BN MLPs with the standard and the asymmetric init
(configs/exp/rank_pretrain_fmnist.yaml): training accuracy and the "lower bound on rank" R = 1/mean_k(1/r(H_k))
over probed layers K per epoch. More pre-training gives a higher R and faster training, the asymmetric init a
lower R and slower training, and SGD keeps the ordering of R it starts from.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.rank import FMNIST_SUB, GREY_PROTO
from bnexp.figures.stats import at_step, mean_over_seeds, pick, step_label


def rank_bound_R(df: pd.DataFrame) -> pd.DataFrame:
    """The rank paper's Fig 6 "lower bound on rank": R = 1 / mean_{k∈K} (1 / r(H_k)) per (run, seed, step),
    from the ``rank_lower_bound`` rows of the probed layers K."""
    sub = pick(df, "rank_lower_bound").copy()
    sub["inv"] = 1.0 / sub["value"]
    out = sub.groupby(["run", "seed", "step"], as_index=False)["inv"].mean()
    out["value"] = 1.0 / out["inv"]
    return out.drop(columns="inv")


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length sequences (ties by average rank)."""
    ra = pd.Series(list(a)).rank().to_numpy()
    rb = pd.Series(list(b)).rank().to_numpy()
    if np.std(ra) == 0 or np.std(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


FIG6_K = {"paper": [1, 5, 10, 15, 20, 25, 29], "quick": [1, 5, 10, 15], "smoke": [1, 5, 10, 15]}


def _fig6_runs(overrides: dict, iters: list[int], layers: list[int]) -> dict:
    base = {**overrides, "probe.layers": layers}
    return {
        "vanilla": RunGrid("rank_pretrain_fmnist", {**base, "pretrain": "none"}),
        # pre-trained on a random batch of the pretrain stream, so R is never measured on the batch it was raised on
        "pretrained": RunGrid("rank_pretrain_fmnist", {**base, "pretrain": "layerwise", "pretrain.sample": "random"},
                              {"pretrain.iters": iters}),
        "bn": RunGrid("rank_pretrain_fmnist", {**base, "pretrain": "none", "norm": "bn_code_fig6",
                                               "probe.point": "post"},
                      {"init": ["torch_default", "asym"]}),
    }


FIG6_QUICK = {**FMNIST_SUB, "model.depth": 16, "model.width": 64, "data.n_train": 1600, "data.n_test": 500,
              "optim.epochs": 3, "n_seeds": 3}
FIG6_RUNS = {
    "paper": _fig6_runs({}, [25, 75], FIG6_K["paper"]),
    "quick": _fig6_runs(FIG6_QUICK, [5, 25], FIG6_K["quick"]),
    "smoke": _fig6_runs({**FIG6_QUICK, **GREY_PROTO, "data.n_train": 640, "data.n_test": 200, "n_seeds": 2},
                        [5, 25], FIG6_K["smoke"]),
}


def fig6_variants(frames):
    """(label, runs, look) of every curve: vanilla without and with each amount of pre-training, BN with the
    standard and the asymmetric init."""
    pre = frames["pretrained"]
    iters = sorted(pre["pretrain.iters"].unique()) if len(pre) else []
    out = [("SGD no pre-training", frames["vanilla"], style.of("norm", "none"))]
    for i, it in enumerate(iters):
        look = style.of("init", "pretrained") if i == 0 else style.series(3 + i)
        out.append((f"SGD, pre-training {int(it)} iterations", pick(pre, pretrain__iters=it), look))
    bn = frames["bn"]
    out += [("BN W ~ U[-a, a]", pick(bn, init__name="torch_default"), style.of("norm", "bn_code_fig6")),
            ("BN W ~ U[0, 2a]", pick(bn, init__name="asym"), {**style.of("init", "asym"), "linestyle": "--"})]
    return out


def plot_fig6(frames, scale):
    fig, axes = style.new_figure(ncols=2)
    for label, df, look in fig6_variants(frames):
        style.band(axes[0], stats.curve(df, "train_acc", "step"), "step", **{**look, "label": label})
        style.band(axes[1], stats.summarize(rank_bound_R(df), "step"), "step", **{**look, "label": label})
    axes[0].set_ylabel("training accuracy")
    axes[1].set_ylabel("lower bound on rank R")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel(step_label(frames["vanilla"]))
    style.legend(axes[1])
    axes[0].set_title(f"depth-{int(frames['vanilla']['model.depth'].iloc[0])} MLP ({scale})")
    return fig


def claims_fig6(frames, scale):
    variants = fig6_variants(frames)
    R = {label: rank_bound_R(df) for label, df, *_ in variants}
    loss = {label: mean_over_seeds(at_step(pick(df, "train_loss"))) for label, df, *_ in variants}
    labels = [label for label, *_ in variants]
    vanilla_chain = [label for label in labels if not label.startswith("BN")]
    r0 = [mean_over_seeds(R[label][R[label]["step"] == 0]) for label in labels]
    r_end = [mean_over_seeds(at_step(R[label])) for label in labels]
    r0_van = r0[: len(vanilla_chain)]
    std, asym = "BN W ~ U[-a, a]", "BN W ~ U[0, 2a]"
    bn_gap = min(mean_over_seeds(R[std][R[std].step == s]) - mean_over_seeds(R[asym][R[asym].step == s])
                 for s in sorted(R[std]["step"].unique()))
    return [
        Claim.above("R at epoch 0 increases with pre-training iterations (smallest increment)",
                    float(np.min(np.diff(r0_van))), 0.0, "pre-training raises the rank"),
        Claim.above("R(BN standard) − R(BN asymmetric), smallest over epochs", bn_gap, 0.0,
                    "the asymmetric init reduces BN's rank"),
        Claim.above("final training loss: BN asymmetric − BN standard", loss[asym] - loss[std], 0.0,
                    "higher rank optimises faster"),
        Claim.above("final training loss: no pre-training − most pre-training", loss[vanilla_chain[0]]
                    - loss[vanilla_chain[-1]], 0.0, "pre-training rescues deep vanilla nets"),
        Claim.at_least("Spearman correlation of R at epoch 0 and at the last epoch over the variants",
                       spearman(r0, r_end), 0.8, "SGD preserves the initial rank ordering"),
    ]


FIG6_CAPTION = (
    "Fashion-MNIST MLP (32 hidden layers of 128 at paper scale): training accuracy (the caption's metric; the code "
    "plotted the loss, also logged) and the lower bound on rank R = 1/mean_k(1/r(H_k)) over layers K = {1, 5, 10, "
    "15, 20, 25, 29} (log axis) per epoch; mean and 95% CI over seeds. Vanilla: ReLU, glorot normal, without and "
    "with layer-wise pre-training (the paper's 25 and 75 iterations per layer, non-cumulative; the code used 5 and "
    "75 cumulative) on one random batch of 32 (the code: its first minibatch; ours is not the probe batch, so R is "
    "measured out of sample), R on pre-activations. BN: torch BN with momentum 0 (the code's) after every Linear "
    "including the first (the code's BNN had none on its input layer), ReLU (the code used tanh), "
    "standard torch init vs the paper's asymmetric U(0, 2/√fan_in) on the weights (the code set every parameter "
    "U(0, 0.1)), R on post-activations. SGD lr 0.01, batch 32, 15 epochs. R is measured on a fixed probe batch of "
    "32 training images (the code used each epoch's last minibatch). Quick: real Fashion-MNIST, 1600 training "
    "images, depth 16, width 64, 3 epochs, pre-training {5, 25} iterations, K = {1, 5, 10, 15}; smoke: synthetic "
    "prototype images.")


FIG6_PAPER_CAPTION = PaperCaption("Figure 6", (
    "Pretraining: Fashion-MNIST on MLPs of depth 32 and width 128. (Left) Training accuracy, (Right) Lower bound on "
    "rank. Blue line is a ReLU network with standard initialization. Other solid lines are pre-trained layer-wise "
    "with 25 (orange) and 75 (green) iterations to increase the rank. Dashed lines are batchnorm networks with "
    "standard and asymmetric initialization. Average and 95% confidence interval of 5 independent runs."))
FIG6_COSTS = Costs(
    quick="≈ 10 s, 2-core CPU", paper="≈ 0.5–1 GPU-h (spec ≈ 1); ≈ 1.5 h 2-core CPU, 5 runs", data="Fashion-MNIST",
    basis="5 runs (vanilla, pre-trained 25/75 iterations, BN standard/asymmetric) × 5 seeds × 15 epochs × 1875 steps "
          "(0.70 M steps of a depth-32 width-128 MLP, ~2–3.5 ms/step on a GPU, launch-bound), matching the spec's "
          "'about 1 GPU-hour'; measured here on 2 CPU cores: 7.7 ms/step (BN), so ≈ 1.5 h on this CPU as well.")

register(Figure("rank/fig6", "Pre-training and asymmetric BN, Fashion-MNIST deep MLP", FIG6_CAPTION, FIG6_RUNS,
                plot_fig6, claims_fig6, kind="train", paper_caption=FIG6_PAPER_CAPTION, costs=FIG6_COSTS))

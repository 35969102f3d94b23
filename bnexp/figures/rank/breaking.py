"""rank/fig5, fig7 and fig13: breaking BN (markov/fig7 and fig11 show the same runs).

BN networks trained on CIFAR-10 with the standard PyTorch init against the asymmetric init U(0, 2/√fan_in) of the
same variance, and BN without centring: VGG19 (fig5, configs/exp/breaking_bn.yaml) and ResNet-50 (fig13,
configs/exp/breaking_bn_resnet.yaml). The asymmetric init collapses the rank of the last hidden layer and the
network cannot fit the data; dropping the centring changes nothing (fig7: training accuracy and r(H_L), BN against
BN w/o centering, on fig5's runs). The paper gives no training recipe; the captions state ours.
"""

from __future__ import annotations

import math

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.rank import COLOUR_PROTO
from bnexp.figures.stats import at_step, last_layer, mean_over_seeds, pick, step_label

VGG_QUICK = {**COLOUR_PROTO, "data.normalize": "none", "model": "vgg_mini",
             "data.batch_size": 64, "data.n_train": 1280, "data.n_test": 320,
             "optim.epochs": 10, "optim.lr": 0.1, "optim.log_every": None, "n_seeds": 3}
VGG_SMOKE = {**VGG_QUICK, "data.shape": [3, 8, 8], "data.n_train": 640, "optim.epochs": 20, "n_seeds": 2}
RESNET_QUICK = {**VGG_QUICK, "model": "resnet_mini"}
RESNET_SMOKE = {**VGG_SMOKE, "model": "resnet_mini"}


def _breaking_runs(exp: str, quick: dict, smoke: dict) -> dict:
    def grids(overrides):
        return {"init": RunGrid(exp, overrides, {"init": ["torch_default", "asym"]}),
                "nocenter": RunGrid(exp, {**overrides, "norm": "bn_nocenter", "init": "torch_default"})}

    return {"paper": grids({}), "quick": grids(quick), "smoke": grids(smoke)}


FIG5_RUNS = _breaking_runs("breaking_bn", VGG_QUICK, VGG_SMOKE)
FIG13_RUNS = _breaking_runs("breaking_bn_resnet", RESNET_QUICK, RESNET_SMOKE)


def breaking_curves(frames):
    """(runs, label, style group, style name) of the three networks: BN with the standard and the asymmetric
    init, and BN without centring."""
    init, nocenter = frames["init"], frames["nocenter"]
    return [(pick(init, init__name="torch_default"), "BN, standard init", "norm", "bn_torch"),
            (pick(init, init__name="asym"), r"BN, asymmetric init $U(0, 2/\sqrt{\mathrm{fan}_\mathrm{in}})$", "init",
             "asym"),
            (nocenter, "BN w/o centering, standard init", "norm", "bn_nocenter")]


def plot_breaking(model: str):
    def plot(frames, scale):
        fig, axes = style.new_figure(ncols=2)
        for df, label, kind, name in breaking_curves(frames):
            style.band(axes[0], stats.curve(df, "train_acc", "step"), "step", kind=kind, name=name, label=label)
            style.band(axes[1], stats.summarize(last_layer(pick(df, "rank_torch")), "step"), "step", kind=kind,
                       name=name, label=label)
        unit = step_label(frames["init"])
        axes[0].set_ylabel("training accuracy")
        axes[1].set_ylabel("rank of last hidden layer (torch matrix_rank)")
        for ax in axes:
            ax.set_xlabel(unit)
            style.legend(ax)
        axes[0].set_title(f"{model}: training accuracy ({scale})")
        axes[1].set_title(f"{model}: rank ({scale})")
        return fig

    return plot


def claims_breaking(frames, scale):
    std, asym, noc = (df for df, *_ in breaking_curves(frames))
    rank_std = mean_over_seeds(at_step(last_layer(pick(std, "rank_torch")), "first"))
    rank_asym = mean_over_seeds(at_step(last_layer(pick(asym, "rank_torch")), "first"))
    acc_std = mean_over_seeds(at_step(pick(std, "train_acc")))
    acc_asym = mean_over_seeds(at_step(pick(asym, "train_acc")))
    acc_noc = mean_over_seeds(at_step(pick(noc, "train_acc")))
    return [
        Claim.at_most("rank at init: asymmetric / standard init", rank_asym / rank_std, 0.5,
                      "the asymmetric init destroys BN's rank preservation"),
        Claim.at_least("final training accuracy: standard − asymmetric init", acc_std - acc_asym, 0.2,
                       "the asymmetric-init network cannot fit the data"),
        Claim.at_most("final training accuracy: |BN − BN w/o centering|", abs(acc_std - acc_noc), 0.1,
                      "dropping the centring is harmless"),
    ]


BREAKING_RECIPE = (
    "The paper gives no training recipe; ours (the spec's default): SGD lr 0.01, momentum 0, batch 128, no "
    "augmentation, per-channel normalisation, 77 epochs of 390 batches = 30 030 iterations, logged every 390 "
    "iterations (each epoch); 5 seeds. 'BN w/o centering' is a real uncentred BN, x/sqrt(mean_B(x²)+eps)·γ+β "
    "(the released code's variant did not remove the centring in training). Asymmetric init: every conv/linear weight "
    "U(0, 2/√fan_in), biases torch_default. Rank: torch matrix_rank (float32) of the last hidden features on a "
    "fixed probe batch, in train mode with the BN running statistics restored after. Quick: {mini} on synthetic "
    "3×16×16 class-prototype images (10 classes), batch 64, lr 0.1 (at 0.01 the mini nets barely move in 200 "
    "steps), 10 epochs of 20 steps, 3 seeds; smoke: 3×8×8 images, 20 epochs of 10 steps, 2 seeds.")
FIG5_CAPTION = ("Breaking BN on VGG19 (cfg E), CIFAR-10: training accuracy and rank of the last hidden layer (the "
                "flattened 512-d conv features), BN with the standard vs the asymmetric init, and BN without "
                "centring; mean and 95% CI over seeds. "
                + BREAKING_RECIPE.format(mini="VGG-mini [16,16,M,32,32,M,64,64,M]"))
FIG13_CAPTION = ("Breaking BN on ResNet-50 (CIFAR variant: 3×3 stem, no max-pool, bottlenecks [3,4,6,3]; the paper "
                 "does not specify it), CIFAR-10: training accuracy and rank of the 2048-d pooled features; as "
                 "rank/fig5. " + BREAKING_RECIPE.format(mini="ResNet-mini (bottlenecks [1,1], width 16)"))

FIG7_RUNS = {scale: {"runs": RunGrid(g["init"].exp, {**g["init"].overrides, "init": "torch_default"},
                                     {"norm": ["bn_torch", "bn_nocenter"]})}
             for scale, g in FIG5_RUNS.items()}


def plot_fig7(frames, scale):
    df = frames["runs"]
    fig, axes = style.new_figure(ncols=2)
    for norm, label in (("bn_torch", "BN"), ("bn_nocenter", "BN w/o centering")):
        sub = pick(df, norm__name=norm)
        style.band(axes[0], stats.curve(sub, "train_acc", "step"), "step", kind="norm", name=norm, label=label)
        style.band(axes[1], stats.summarize(last_layer(pick(sub, "rank_lower_bound")), "step"), "step", kind="norm",
                   name=norm, label=label)
    axes[0].set_ylabel("VGG19: training accuracy")
    axes[1].set_ylabel(r"VGG19: lower bound on rank $r(H_L)$")
    for ax in axes:
        ax.set_xlabel(step_label(df))
        style.legend(ax)
    axes[0].set_title(f"centring for BN ({scale})")
    return fig


def claims_fig7(frames, scale):
    df = frames["runs"]
    bn, noc = pick(df, norm__name="bn_torch"), pick(df, norm__name="bn_nocenter")
    acc = [mean_over_seeds(at_step(pick(x, "train_acc"))) for x in (bn, noc)]
    r = [mean_over_seeds(at_step(last_layer(pick(x, "rank_lower_bound")))) for x in (bn, noc)]
    ratio = max(r) / min(r) if min(r) > 0 else math.inf
    return [Claim.at_most("final training accuracy: |BN − BN w/o centering|", abs(acc[0] - acc[1]), 0.1,
                          "no difference in accuracy"),
            Claim.at_most("final r(H_L): max/min of BN and BN w/o centering", ratio, 2.0, "no difference in r(H)")]


FIG7_CAPTION = ("Centring for BN, VGG19 on CIFAR-10: training accuracy and r(H_L) = Tr(M)²/‖M‖_F² of the last "
                "hidden features, BN vs BN without centring (standard init); the runs are rank/fig5's. "
                + BREAKING_RECIPE.format(mini="VGG-mini"))


FIG5_PAPER_CAPTION = PaperCaption("Figure 5", (
    "Breaking Batchnorm: CIFAR-10 on VGG19 with standard PyTorch initialization as well as a uniform initialization "
    "of same variance. (Left) training accuracy, (Right) Rank of last hidden layer computed using "
    "torch.matrix_rank(). Plot also shows results for standard initialization and BN without mean deduction. Avg. "
    "and 95% CI of 5 independent runs. (See Fig. 13 in Appendix for similar results on ResNet-50)."))
FIG5_COSTS = Costs(
    quick="≈ 45 s, 2-core CPU", paper="≈ 1.5–3 GPU-h, A100-class (est.; spec 8–15), 3 runs", data="CIFAR-10",
    basis="Estimated: 3 runs × 5 seeds = 15 VGG19 (cfg E, 0.4 GMAC/image) trainings of 30 030 SGD steps at batch "
          "128, estimated at ~11–26 ms/step (5–12k img/s under bf16 autocast on an A100/H100-class GPU) plus ~5% for "
          "77 log points, one job (5 seeds) ≈ 30–65 min; the spec's 8–15 GPU-h for rank/fig5 assumes fp32, "
          "DataLoader-era throughput (1–2k img/s): treat it as the upper bound, no CUDA timing exists yet "
          "(docs/performance.md).")

FIG7_PAPER_CAPTION = PaperCaption("Figure 7", (
    "Centering for BN. The experiment is conducted on a VGG network. The blue line indicates the original BN "
    "network and the orange line is BN without mean adaption. The vertical axis in the left plot is training "
    "accuracy. In the right plot it is r(H_L), where H_L is the data representation in the last hidden layer L. The "
    "horizontal axis indicates the number of iterations."))
FIG7_COSTS = Costs(
    quick="≈ 30 s, 2-core CPU", paper="≈ 1–2 GPU-h, A100-class (est.), 2 runs ⊂ fig5", data="CIFAR-10",
    basis="Its 2 runs (BN and uncentred BN, standard init) are 2 of rank/fig5's 3 (free once fig5 is done); "
          "estimated: 2 runs × 5 seeds = 10 VGG19 (cfg E, 0.4 GMAC/image) trainings of 30 030 SGD steps at batch "
          "128, estimated at ~11–26 ms/step (5–12k img/s under bf16 autocast on an A100/H100-class GPU) plus ~5% for "
          "77 log points, one job (5 seeds) ≈ 30–65 min; the spec's 8–15 GPU-h for rank/fig5 assumes fp32, "
          "DataLoader-era throughput (1–2k img/s): treat it as the upper bound, no CUDA timing exists yet "
          "(docs/performance.md).")

FIG13_PAPER_CAPTION = PaperCaption("Figure 13", (
    "Breaking Batchnorm: CIFAR-10 on a ResNet-50 with standard PyTorch initialization as well as a uniform "
    "initialization of same variance in R^+. Average and 95% confidence interval of 5 independent runs. This plot "
    "also shows results for a BN network without mean deduction/adaption, validating our claim from Section 2."))
FIG13_COSTS = Costs(
    quick="≈ 2.2 min, 2-core CPU", paper="≈ 4–8 GPU-h, A100-class (est.; spec 10+), 3 runs", data="CIFAR-10",
    basis="Estimated: 3 runs × 5 seeds = 15 ResNet-50 (CIFAR variant, ≈ 1.3 GMAC/image) trainings of 30 030 steps at "
          "batch 128, estimated at ~32–64 ms/step (2–4k img/s, bf16 autocast, A100/H100-class), one job (5 seeds) ≈ "
          "1.3–2.7 h; the spec says '10+ GPU-hours' (fp32-era throughput), treat it as the upper bound; no CUDA "
          "timing exists yet.")

register(
    Figure("rank/fig5", "Breaking BN: VGG19, standard vs asymmetric init, BN w/o centering", FIG5_CAPTION, FIG5_RUNS,
           plot_breaking("VGG19"), claims_breaking, kind="train", paper_caption=FIG5_PAPER_CAPTION, costs=FIG5_COSTS),
    Figure("rank/fig7", "Centring for BN, VGG19", FIG7_CAPTION, FIG7_RUNS, plot_fig7, claims_fig7, kind="train",
           paper_caption=FIG7_PAPER_CAPTION, costs=FIG7_COSTS),
    Figure("rank/fig13", "Breaking BN: ResNet-50", FIG13_CAPTION, FIG13_RUNS, plot_breaking("ResNet-50"),
           claims_breaking, kind="train", paper_caption=FIG13_PAPER_CAPTION, costs=FIG13_COSTS),
)

"""rank/fig4, fig11 and fig12: rank pre-training of vanilla MLPs against BN.

ReLU MLPs of width 128 and increasing depth trained with SGD: BN nets against vanilla nets whose rank was first
raised by Algorithm 1 (end-to-end gradient ascent on r(H_L)), and, as the reference for "pre-training helps",
the same vanilla nets without pre-training. fig4: training loss on CIFAR-10 (configs/exp/pretrain_vs_bn.yaml);
fig11: training accuracy and test loss of the same runs; fig12: all three on Fashion-MNIST
(configs/exp/pretrain_vs_bn_fmnist.yaml). The paper: "the slow down in depth is much less severe for the
pre-trained networks", and "the pre-training is not only faster than BN on deep networks"; the claims compare the
pre-trained net with BN (and with the vanilla net) at the scale where each comparison can hold, as the captions say.
"""

from __future__ import annotations

from bnexp.figures import Claim, Costs, Figure, PaperCaption, RunGrid, register, stats, style
from bnexp.figures.rank import COLOUR_PROTO, GREY_PROTO
from bnexp.figures.stats import at_step, last_layer, mean_over_seeds, pick, step_label

PRE_DEPTHS = {"paper": [10, 20, 30, 40], "quick": [10, 20], "smoke": [20]}
PRE_QUICK = {"model.width": 64, "data.batch_size": 64, "data.n_train": 1920, "data.n_test": 500,
             "optim.epochs": 5, "optim.lr_grid": None, "optim.lr": 0.01, "n_seeds": 3,
             "pretrain.minibatches": 50, "pretrain.steps": 10, "pretrain.lr": 0.001}


def _pretrain_runs(exp: str, overrides: dict, depths: list[int]) -> dict:
    grid = {"model.depth": depths}
    vanilla = {**overrides, "norm": "none"}
    if overrides.get("optim.lr_grid", "paper") == "paper":  # paper: the pre-trained/vanilla grid is {1e-2, 1e-3}
        vanilla["optim.lr_grid"] = [0.01, 0.001]
    pre_keys = {k: v for k, v in vanilla.items() if not k.startswith("pretrain.")}
    return {
        "bn": RunGrid(exp, {k: v for k, v in overrides.items() if not k.startswith("pretrain.")}, grid),
        "pretrained": RunGrid(exp, {**vanilla, "pretrain": "end_to_end"}, grid),
        "vanilla": RunGrid(exp, pre_keys, grid),
    }


def _pre_scales(exp: str, quick_data: dict, smoke_data: dict) -> dict:
    return {"paper": _pretrain_runs(exp, {}, PRE_DEPTHS["paper"]),
            "quick": _pretrain_runs(exp, {**PRE_QUICK, **quick_data}, PRE_DEPTHS["quick"]),
            "smoke": _pretrain_runs(exp, {**PRE_QUICK, **smoke_data, "data.n_train": 960, "optim.epochs": 3,
                                          "n_seeds": 2, "pretrain.minibatches": 15}, PRE_DEPTHS["smoke"])}


FIG4_RUNS = _pre_scales("pretrain_vs_bn", COLOUR_PROTO, COLOUR_PROTO)
FIG12_RUNS = _pre_scales("pretrain_vs_bn_fmnist", {"data": "fashion_mnist"}, GREY_PROTO)
PRE_VARIANTS = (("bn", "BN-MLP (SGD)", "norm", "bn_torch"),
                ("pretrained", "pre-trained vanilla (SGD)", "init", "pretrained"),
                ("vanilla", "vanilla (SGD)", "norm", "none"))
# The pre-trained net against BN: bounds on (pre-trained final loss) / (BN final loss) at the depth where it is
# smallest. Smoke runs 3 epochs and ends near chance (measured 1.06 training, 1.18 test on prototypes), quick and
# paper must have pre-training at least level with BN (measured at quick scale, training: 0.005 on prototypes,
# 0.76 on Fashion-MNIST; test: 0.04, 0.84).
COMPETITIVE = {"train_loss": {"smoke": 1.2, "quick": 1.0, "paper": 1.0},
               "test_loss": {"smoke": 1.3, "quick": 1.0, "paper": 1.0}}


def plot_pretrain(metrics: tuple[tuple[str, str], ...]):
    def plot(frames, scale):
        depths = sorted(frames["bn"]["model.depth"].unique())
        fig, axes = style.new_figure(ncols=len(depths), nrows=len(metrics))
        for row, (metric, ylabel) in enumerate(metrics):
            for col, depth in enumerate(depths):
                ax = axes[row * len(depths) + col]
                for key, label, kind, name in PRE_VARIANTS:
                    style.band(ax, stats.curve(frames[key], metric, "step", model__depth=depth), "step", kind=kind,
                               name=name, label=label)
                ax.set_xlabel(step_label(frames["bn"]))
                ax.set_ylabel(ylabel)
                ax.set_title(f"{int(depth)} hidden layers ({scale})")
        style.legend(axes[0])
        return fig

    return plot


def _final(frames, key, metric, depth, which="last"):
    return mean_over_seeds(at_step(pick(frames[key], metric, model__depth=depth), which))


def _epoch_one(frames, key, metric, depth):
    sub = pick(frames[key], metric, model__depth=depth)
    return mean_over_seeds(sub[sub["step"] == 1])


def against_bn(frames, scale, metric: str, name: str) -> list[Claim]:
    """The pre-trained net against BN on the final ``metric``: level with BN at some depth (every scale); at paper
    scale also the paper's depth statements, faster than BN at the deepest net and slowed down less by depth."""
    depths = sorted(frames["bn"]["model.depth"].unique())
    final = {key: {d: _final(frames, key, metric, d) for d in depths} for key in ("pretrained", "bn")}
    ratio = {d: final["pretrained"][d] / final["bn"][d] for d in depths}
    best = min(ratio, key=ratio.get)
    claims = [Claim.at_most(f"final {name}, pre-trained / BN, at the depth where smallest (depth {best})", ratio[best],
                            COMPETITIVE[metric][scale], "pre-training is competitive with BN")]
    if scale == "paper":
        shallow, deep = depths[0], depths[-1]
        claims.append(Claim.at_most(f"depth {deep} (deepest): final {name}, pre-trained − BN",
                                    final["pretrained"][deep] - final["bn"][deep], 0.0,
                                    "pre-training is faster than BN on deep networks"))
        slowdown = {key: final[key][deep] - final[key][shallow] for key in final}
        claims.append(Claim.at_most(f"slow-down with depth: increase of the final {name} from depth {shallow} to "
                                    f"{deep}, pre-trained − BN", slowdown["pretrained"] - slowdown["bn"], 0.0,
                                    "the slow down in depth is much less severe for the pre-trained networks"))
    return claims


def claims_fig4(frames, scale):
    """Per depth: pre-training raises r(H_L) and BN trains; at the deepest net (where depth slows the vanilla
    net) the pre-trained net ends with the lower training loss; the pre-trained net against BN."""
    depths = sorted(frames["bn"]["model.depth"].unique())
    claims = []
    for depth in depths:
        r_pre, r_van = (mean_over_seeds(at_step(last_layer(pick(frames[key], "rank_lower_bound", model__depth=depth)),
                                                "first")) for key in ("pretrained", "vanilla"))
        claims += [
            Claim.at_least(f"depth {depth}: r(H_L) at epoch 0, pre-trained / same init not pre-trained", r_pre / r_van,
                           1.25 if scale == "smoke" else 1.5, "pre-training maximises the rank"),
            # epoch 1 (a running mean in train mode), not step 0: at step 0 the losses are eval-mode passes, where
            # torch BN still has its initial running statistics (mean 0, variance 1) and acts as the identity
            Claim.above(f"depth {depth}: BN training loss, epoch 1 − last epoch",
                        _epoch_one(frames, "bn", "train_loss", depth)
                        - _final(frames, "bn", "train_loss", depth), 0.0, "BN trains"),
        ]
    deep = depths[-1]
    claims.append(Claim.above(f"depth {deep} (deepest): final training loss, vanilla − pre-trained",
                              _final(frames, "vanilla", "train_loss", deep)
                              - _final(frames, "pretrained", "train_loss", deep), 0.0,
                              "pre-training speeds up training of deep nets"))
    return claims + against_bn(frames, scale, "train_loss", "training loss")


def claims_fig11(frames, scale):
    deep = sorted(frames["bn"]["model.depth"].unique())[-1]
    return [Claim.above(f"depth {deep} (deepest): final test loss, vanilla − pre-trained",
                        _final(frames, "vanilla", "test_loss", deep) - _final(frames, "pretrained", "test_loss", deep),
                        0.0, "the improvement shows in the test loss too"),
            *against_bn(frames, scale, "test_loss", "test loss")]


def claims_fig12(frames, scale):
    return claims_fig4(frames, scale) + claims_fig11(frames, scale)


PRE_RECIPE = (
    "ReLU MLP of width 128, glorot normal init; BN = torch BatchNorm1d (Linear → BN → ReLU); pre-training = "
    "Algorithm 1 end to end as in the code (1000 minibatches of 64 from one permutation, 40 SGD steps each, "
    "lr 1e-3, on r^(-1/2) of the last hidden layer's Gram matrix). SGD batch 64, no momentum, 100 epochs; learning "
    "rate grid-searched per run by the lowest final training loss (BN {1e-2, 1e-3, 1e-4}; vanilla and pre-trained "
    "{1e-2, 1e-3}). Depths {10, 20, 30, 40} (the text does not list them). 5 independent initialisations (the code "
    "trained its runs from one shared initial state). The vanilla net without pre-training is our addition: the "
    "reference for the claim. Quick: width 64, depths {10, 20}, pre-training 50 minibatches × 10 steps, 5 epochs "
    "at lr 0.01 (no grid), 3 seeds, on {data}; smoke: depth 20, 3 epochs, on synthetic prototype images.")
AGAINST_BN = (
    " Claims, pre-trained against BN: the final {loss} of the pre-trained net over BN's, at the depth where that "
    "ratio is smallest, is at most 1 (smoke: {smoke}; 3 epochs end near chance); at paper scale also the paper's "
    "depth statements, the pre-trained {loss} at most BN's at the deepest net, and its increase from the shallowest "
    "to the deepest net at most BN's. Those are not claimed at quick scale, where they do not hold: with 1/80 of "
    "the paper's pre-training and 5 epochs, BN is ahead at depth 20 (measured final training loss, pre-trained / "
    "BN: 2.5 on prototypes, 1.0 on Fashion-MNIST) and the pre-trained net ahead at depth 10 (0.005 and 0.76; on "
    "prototypes the vanilla net without pre-training is as far ahead).")
FIG4_CAPTION = ("Training loss per epoch of CIFAR-10 MLPs of increasing depth: BN vs rank-pre-trained vanilla nets; "
                "mean and 95% CI over seeds. Inputs are the raw 0–255 pixels (the code's). "
                + PRE_RECIPE.replace("{data}", "synthetic 3×16×16 class-prototype images (no CIFAR-10 offline)")
                + AGAINST_BN.format(loss="training loss", smoke=1.2))
FIG11_CAPTION = ("rank/fig4's runs: training accuracy and test loss (eval mode; the code evaluated BN nets in train "
                 "mode) per epoch. " + PRE_RECIPE.replace("{data}", "synthetic 3×16×16 class-prototype images")
                 + AGAINST_BN.format(loss="test loss", smoke=1.3))
FIG12_CAPTION = ("rank/fig4 and fig11 on Fashion-MNIST: training loss, accuracy and test loss per epoch. Inputs are "
                 "the raw 0–255 pixels as for CIFAR-10 (the paper does not say; with [0, 1] inputs end-to-end "
                 "pre-training has no gradient: r(H_L) stays 1.000, measured). "
                 + PRE_RECIPE.replace("{data}", "a subsample of the real Fashion-MNIST")
                 + AGAINST_BN.format(loss="training and test loss", smoke="1.2 and 1.3"))

ACC_LOSS = (("train_loss", "training loss"),)
ACC_TEST = (("train_acc", "training accuracy"), ("test_loss", "test loss"))
ALL_CURVES = (("train_loss", "training loss"), ("train_acc", "training accuracy"), ("test_loss", "test loss"))

FIG4_PAPER_CAPTION = PaperCaption("Figure 4", (
    "Pre-training versus BN: Loss over epochs on CIFAR-10 for MLPs of increasing depth with 128 hidden units and "
    "ReLU activation. Trained with SGD (batchsize 64) and grid-searched stepsize. See Fig. 11 for the corresponding "
    "test loss and accuracy as well as Fig. 12 for FashionMNIST results."))
FIG4_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 5–10 GPU-h, 1×A100-class (est.), 12 runs", data="CIFAR-10",
    basis="Estimated from the grid (the spec says only 'GPU hours'): 12 runs = {BN, pre-trained, vanilla} × depths "
          "10–40, i.e. 140 trainings (5 seeds × a 3- or 2-point lr grid) of 100 epochs × 782 steps (10.9 M steps of "
          "a width-128 float32 MLP at ~1.5–2.7 ms/step, launch-bound) plus 20 end-to-end pre-trainings of 40 000 "
          "steps; the longest job (BN, depth 40, 15 trainings) ≈ 1–1.5 h; the same 12 runs as rank/fig11.")

FIG11_PAPER_CAPTION = PaperCaption("Figure 11", (
    "CIFAR-10: Same setting as Fig.4 but now showing accuracy and test loss"))
FIG11_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 5–10 GPU-h, 1×A100-class (= rank/fig4), 12 runs", data="CIFAR-10",
    basis="Exactly rank/fig4's 12 runs (free once fig4 is done); estimated from the grid (the spec says only 'GPU "
          "hours'): 12 runs = {BN, pre-trained, vanilla} × depths 10–40, i.e. 140 trainings (5 seeds × a 3- or "
          "2-point lr grid) of 100 epochs × 782 steps (10.9 M steps of a width-128 float32 MLP at ~1.5–2.7 ms/step, "
          "launch-bound) plus 20 end-to-end pre-trainings of 40 000 steps; the longest job (BN, depth 40, 15 "
          "trainings) ≈ 1–1.5 h.")

FIG12_PAPER_CAPTION = PaperCaption("Figure 12", (
    "Results of Fig.4 for FashionMNIST"))
FIG12_COSTS = Costs(
    quick="≈ 25 s, 2-core CPU", paper="≈ 6–11 GPU-h, 1×A100-class (est.), 12 runs", data="Fashion-MNIST",
    basis="As rank/fig4 on Fashion-MNIST (938 steps an epoch: 13.1 M steps over 140 trainings at ~1.5–2.7 ms/step, "
          "plus 20 pre-trainings of 40 000 steps); CPU reference measured here: 5.8 ms/step (BN, depth 25) and ≈ 2 "
          "min per pre-training on 2 cores, so ≈ 1 CPU-day.")

register(
    Figure("rank/fig4", "Rank pre-training vs BN: training loss, CIFAR-10 MLPs", FIG4_CAPTION, FIG4_RUNS,
           plot_pretrain(ACC_LOSS), claims_fig4, kind="train", paper_caption=FIG4_PAPER_CAPTION, costs=FIG4_COSTS),
    Figure("rank/fig11", "Pre-training vs BN: training accuracy and test loss", FIG11_CAPTION, FIG4_RUNS,
           plot_pretrain(ACC_TEST), claims_fig11, kind="train", paper_caption=FIG11_PAPER_CAPTION, costs=FIG11_COSTS),
    Figure("rank/fig12", "Pre-training vs BN on Fashion-MNIST", FIG12_CAPTION, FIG12_RUNS, plot_pretrain(ALL_CURVES),
           claims_fig12, kind="train", paper_caption=FIG12_PAPER_CAPTION, costs=FIG12_COSTS),
)

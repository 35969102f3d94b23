"""The long version's figures that the NeurIPS version already shows: the same runs, plots and claims as the rank
figure each aliases (``alias_of``), registered under the long version's numbers.

markov/fig2 = rank/fig3 (a), fig3 = rank/fig3 (b), fig5 = rank/fig1, fig6 = rank/fig6, fig8 = rank/fig10,
fig9 = rank/fig8, fig10 = rank/fig9, fig11 = rank/fig7. markov/fig7 shows rank/fig5 and fig13 (VGG19 above
ResNet-50) without the w/o-centering curve, which the long version moved to its fig11.
"""

from __future__ import annotations

from bnexp.figures import Costs, Figure, PaperCaption, register, stats, style
from bnexp.figures.rank import alignment, breaking, depth, layerwise, regularity, spectrum
from bnexp.figures.stats import last_layer, pick


def _model_frames(frames, prefix: str) -> dict:
    """The frames of one network of markov/fig7 (grid names ``vgg_init``, ``resnet_nocenter``, ...)."""
    return {k[len(prefix):]: v for k, v in frames.items() if k.startswith(prefix)}


def plot_fig7(frames, scale):
    fig, axes = style.new_figure(ncols=2, nrows=2)
    for row, (prefix, model) in enumerate((("vgg_", "VGG19"), ("resnet_", "ResNet-50"))):
        for df, label, kind, name in breaking.breaking_curves(_model_frames(frames, prefix))[:2]:
            style.band(axes[2 * row], stats.curve(df, "train_acc", "step"), "step", kind=kind, name=name, label=label)
            style.band(axes[2 * row + 1], stats.summarize(last_layer(pick(df, "rank_torch")), "step"), "step",
                       kind=kind, name=name, label=label)
        axes[2 * row].set_title(f"{model}: training accuracy ({scale})")
        axes[2 * row + 1].set_title(f"{model}: rank of last hidden layer")
    for ax in axes:
        ax.set_xlabel(stats.step_label(frames["vgg_init"]))
    style.legend(axes[1])
    return fig


def claims_fig7(frames, scale):
    out = []
    for prefix, model in (("vgg_", "VGG19"), ("resnet_", "ResNet-50")):
        for claim in breaking.claims_breaking(_model_frames(frames, prefix), scale)[:2]:  # not the centring one
            claim.statement = f"{model}: {claim.statement}"
            out.append(claim)
    return out


_a = style.single_panel(spectrum.panel_fig3a, spectrum.claims_fig3a, "a", f"{style.RANK_HALF} vs width")
_b = style.single_panel(spectrum.panel_fig3b, spectrum.claims_fig3b, "b", r"top-10 eigenvalues of $M_\ell$")

FIG2_PAPER_CAPTION = PaperCaption("Figure 2", (
    "Result of Theorem 3 for different values of γ, where $\\gamma = \\infty$ stands for networks without skip "
    "connections. Each point represents the average ${\\rm rank_{1/2}}$ over depth (L=10⁶) of networks of width $d "
    "\\in \\{8, 16, ..., 256\\}$ as on the x-axis. Shaded areas are standard deviation."))
FIG2_COSTS = Costs(
    quick="≈ 30 s, 2-core CPU", paper="≈ 27 min, 2-core CPU (alias, measured)", data="none",
    basis="Alias of rank/fig3 (its fig3a panel only: the 18 rank_width chains, shared with rank/fig3, free once that "
          "is done); cost from rank/fig3's measured 26 min 40 s, of which fig3b is seconds.")

FIG3_PAPER_CAPTION = PaperCaption("Figure 3", (
    "Top 10 eigenvalues of $M_{\\ell} = M(H_{\\ell}^{(\\gamma)})$ for increasing values of ℓ. As can be seen, BN "
    "quickly amplifies smaller variations in the data while reducing the largest one."))
FIG3_COSTS = Costs(
    quick="≈ 5 s, 2-core CPU", paper="≈ 5 s, 2-core CPU (alias, measured)", data="none",
    basis="Alias of rank/fig3 but runs only its fig3b panel (one rank_collinear chain, d = N = 50, 100 layers, "
          "shared with rank/fig3): measured here at 1.8 s wall plus the plot; the 27-min fig3a chains are not part "
          "of it.")

FIG5_PAPER_CAPTION = PaperCaption("Figure 5", (
    "Effect of depth on learning: Fashion-MNIST on MLPs of depth 1-32, where each hidden layer has 128 units with "
    "ReLU activations in all networks. Average and 95% confidence interval of 5 independent runs."))
FIG5_COSTS = Costs(
    quick="≈ 3.4 min, 2-core CPU", paper="≈ 6–10 GPU-h, 1×A100-class (alias), 34 runs", data="Fashion-MNIST",
    basis="Alias of rank/fig1, same 34 runs (free once rank/fig1 is done); spec estimate (rank_markov.md, 000 Fig 1: "
          "6–10 GPU-h with the lr grid) checked against the grid: 34 runs = 17 depths × {vanilla, BN}, each 5 seeds "
          "× 3 learning rates × 35 100 SGD steps (510 trainings, 17.9 M steps) of a width-128 MLP at ~1–2 ms/step "
          "(launch-bound), one job ≈ 10–35 min by depth; CPU reference measured here: 4–8.5 ms/step at depth 17 on 2 "
          "cores, ≈ 30 CPU-h in all.")

FIG6_PAPER_CAPTION = PaperCaption("Figure 6", (
    "Pretraining: Fashion-MNIST on MLPs of depth 32 and width 128. Blue line is a ReLU network with standard "
    "initialization. Other solid lines are pre-trained layer-wise with 25 (orange) and 75 (green) iterations to "
    "improve rank. Dashed lines are batchnorm networks with standard and asymmetric initialization. Average and 95% "
    "confidence interval of 5 independent runs."))
FIG6_COSTS = Costs(
    quick="≈ 10 s, 2-core CPU", paper="≈ 0.5–1 GPU-h (alias of rank/fig6), 5 runs", data="Fashion-MNIST",
    basis="Alias of rank/fig6, same 5 runs (free once rank/fig6 is done); 5 runs (vanilla, pre-trained 25/75 "
          "iterations, BN standard/asymmetric) × 5 seeds × 15 epochs × 1875 steps (0.70 M steps of a depth-32 "
          "width-128 MLP, ~2–3.5 ms/step on a GPU, launch-bound), matching the spec's 'about 1 GPU-hour'; measured "
          "here on 2 CPU cores: 7.7 ms/step (BN), so ≈ 1.5 h on this CPU as well.")

FIG7_PAPER_CAPTION = PaperCaption("Figure 7", (
    "Breaking Batchnorm: CIFAR-10 on a VGG19 (top) and ResNet50 (bottom) architecture with standard PyTorch "
    "initialization as well as a uniform initialization of same variance in \\mathbb{R}^+. Average and 95% "
    "confidence interval of 5 independent runs."))
FIG7_COSTS = Costs(
    quick="≈ 3.0 min, 2-core CPU", paper="≈ 6–11 GPU-h, A100-class (= rank/fig5 + fig13), 6 runs", data="CIFAR-10",
    basis="Alias of rank/fig5, but it also runs rank/fig13's ResNet-50 grid (6 runs, shared with those two figures): "
          "15 VGG19 trainings (≈ 1.5–3 GPU-h, spec 8–15) + 15 ResNet-50 trainings (≈ 4–8 GPU-h, spec 10+), estimated "
          "from the grid at 5–12k / 2–4k img/s under bf16 autocast; no CUDA timing exists yet.")

FIG8_PAPER_CAPTION = PaperCaption("Figure 8", (
    "Directional gradient vanishing CIFAR-10 on a VGG19 network with BN, SGD, SGD with 100x learning rate and SGD "
    "on random data. Average and 95% confidence interval of 5 independent runs."))
FIG8_COSTS = Costs(
    quick="≈ 20 s, 2-core CPU", paper="≈ 2–4.5 GPU-h, A100-class (alias of rank/fig10)",
    data="CIFAR-10 (+ generated uniform images)",
    basis="Alias of rank/fig10, same 4 runs (free once rank/fig10 is done); 20 VGG19 (cfg E, 0.4 GMAC/image) "
          "trainings of 30 030 SGD steps at batch 128, estimated at ~11–26 ms/step (5–12k img/s under bf16 autocast "
          "on an A100/H100-class GPU) plus ~5% for 77 log points, one job (5 seeds) ≈ 30–65 min; the spec's 8–15 "
          "GPU-h for rank/fig5 assumes fp32, DataLoader-era throughput (1–2k img/s): treat it as the upper bound, no "
          "CUDA timing exists yet (docs/performance.md).")

FIG9_PAPER_CAPTION = PaperCaption("Figure 9", (
    "Regularity constant of the invariant distribution. The vertical axis is the estimated regularity constant α "
    "and the horizontal axis is d. We use $L = 10^5$ (in Eq. (54))."))
FIG9_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 3 min, 2-core CPU (alias of rank/fig8)", data="none",
    basis="Alias of rank/fig8: the same 6 rank_regularity runs (free once rank/fig8 or fig9 is done); probed here at "
          "1/10 depth, 20 s ×10 with runtime.threads=1.")

FIG10_PAPER_CAPTION = PaperCaption("Figure 10", (
    "Dependency of $\\mathbb{E}_{\\nu_{\\gamma}} \\|M(H)\\|_F^2$ on d. The horizontal axis is $\\log_2(d)$ and the "
    "vertical axis shows $\\log_2(\\frac{1}{L}\\sum_{\\ell=1}^L \\|M(H_\\ell^{(\\gamma)})\\|_F^2)$ for $L=10^5$. "
    "The green dashed-line plots $\\log_2(d^{1.5})$."))
FIG10_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 3 min, 2-core CPU (alias of rank/fig9)", data="none",
    basis="Alias of rank/fig9: the same 6 rank_regularity runs as rank/fig8/fig9 (free once any of them is done); "
          "probed here at 1/10 depth, 20 s ×10 with runtime.threads=1.")

FIG11_PAPER_CAPTION = PaperCaption("Figure 11", (
    "Mean deduction for BN. The experiment is conducted on a VGG network. The blue plot is for the original BN "
    "network, and the orange one is for the BN network without the mean deduction. The vertical axis in the left "
    "plot is training accuracy, and in the right plot is $r(H_L)$ where H is the preactivation matrix and L is the "
    "number of hidden layers. The horizontal axis indicates the number of iterations."))
FIG11_COSTS = Costs(
    quick="≈ 30 s, 2-core CPU", paper="≈ 1–2 GPU-h, A100-class (alias of rank/fig7), 2 runs", data="CIFAR-10",
    basis="Alias of rank/fig7: the same 2 runs, also part of rank/fig5's; estimated: 2 runs × 5 seeds = 10 VGG19 "
          "(cfg E, 0.4 GMAC/image) trainings of 30 030 SGD steps at batch 128, estimated at ~11–26 ms/step (5–12k "
          "img/s under bf16 autocast on an A100/H100-class GPU) plus ~5% for 77 log points, one job (5 seeds) ≈ "
          "30–65 min; the spec's 8–15 GPU-h for rank/fig5 assumes fp32, DataLoader-era throughput (1–2k img/s): "
          "treat it as the upper bound, no CUDA timing exists yet (docs/performance.md).")

register(
    Figure("markov/fig2", "Theorem 3 validation: rank_1/2 vs width (its panel a)", spectrum.FIG3A_CAPTION,
           {s: {"a": g} for s, g in spectrum.FIG3A_RUNS.items()}, *_a, alias_of="rank/fig3",
           paper_caption=FIG2_PAPER_CAPTION, costs=FIG2_COSTS),
    Figure("markov/fig3", "Top-10 eigenvalues of M_ℓ, nearly collinear input (its panel b)", spectrum.FIG3B_CAPTION,
           {s: {"b": g} for s, g in spectrum.FIG3B_RUNS.items()}, *_b, alias_of="rank/fig3",
           paper_caption=FIG3_PAPER_CAPTION, costs=FIG3_COSTS),
    Figure("markov/fig5", "Effect of depth on learning, Fashion-MNIST (rank/fig1)", depth.FIG1_CAPTION + " The long "
           "version ran 15 000 iterations at batch 32; this figure shows rank/fig1's runs.", depth.FIG1_RUNS,
           depth.plot_fig1, depth.claims_fig1, kind="train", alias_of="rank/fig1",
           paper_caption=FIG5_PAPER_CAPTION, costs=FIG5_COSTS),
    Figure("markov/fig6", "Pre-training, Fashion-MNIST depth 32 (rank/fig6)", layerwise.FIG6_CAPTION,
           layerwise.FIG6_RUNS, layerwise.plot_fig6, layerwise.claims_fig6, kind="train", alias_of="rank/fig6",
           paper_caption=FIG6_PAPER_CAPTION, costs=FIG6_COSTS),
    Figure("markov/fig7", "Breaking BN: VGG19 (top) and ResNet-50 (bottom)",
           breaking.FIG5_CAPTION + " " + breaking.FIG13_CAPTION,
           {s: {**{f"vgg_{k}": g for k, g in breaking.FIG5_RUNS[s].items()},
                **{f"resnet_{k}": g for k, g in breaking.FIG13_RUNS[s].items()}} for s in breaking.FIG5_RUNS},
           plot_fig7, claims_fig7, kind="train", alias_of="rank/fig5",
           paper_caption=FIG7_PAPER_CAPTION, costs=FIG7_COSTS),
    Figure("markov/fig8", "Directional gradient vanishing (rank/fig10)", alignment.FIG10_CAPTION,
           alignment.FIG10_RUNS, alignment.plot_fig10, alignment.claims_fig10, kind="train", alias_of="rank/fig10",
           paper_caption=FIG8_PAPER_CAPTION, costs=FIG8_COSTS),
    Figure("markov/fig9", "Regularity constant vs width", regularity.REG_CAPTION, regularity.REG_RUNS,
           regularity.plot_fig8, regularity.check_fig8, alias_of="rank/fig8",
           paper_caption=FIG9_PAPER_CAPTION, costs=FIG9_COSTS),
    Figure("markov/fig10", "E‖M‖_F² vs width", regularity.REG_CAPTION, regularity.REG_RUNS, regularity.plot_fig9,
           regularity.check_fig9, alias_of="rank/fig9", paper_caption=FIG10_PAPER_CAPTION, costs=FIG10_COSTS),
    Figure("markov/fig11", "Mean deduction for BN, VGG (rank/fig7)", breaking.FIG7_CAPTION, breaking.FIG7_RUNS,
           breaking.plot_fig7, breaking.claims_fig7, kind="train", alias_of="rank/fig7",
           paper_caption=FIG11_PAPER_CAPTION, costs=FIG11_COSTS),
)

"""The long version's figures that the NeurIPS version already shows: the same runs, plots and claims as the rank
figure each aliases (``alias_of``), registered under the long version's numbers.

markov/fig2 = rank/fig3 (a), fig3 = rank/fig3 (b), fig5 = rank/fig1, fig6 = rank/fig6, fig8 = rank/fig10,
fig9 = rank/fig8, fig10 = rank/fig9, fig11 = rank/fig7. markov/fig7 shows rank/fig5 and fig13 (VGG19 above
ResNet-50) without the w/o-centering curve, which the long version moved to its fig11.
"""

from __future__ import annotations

from bnexp.figures import Figure, register, stats, style
from bnexp.figures.rank import alignment, breaking, chains, depth, layerwise, regularity
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
    axes[1].legend()
    return fig


def claims_fig7(frames, scale):
    out = []
    for prefix, model in (("vgg_", "VGG19"), ("resnet_", "ResNet-50")):
        for claim in breaking.claims_breaking(_model_frames(frames, prefix), scale)[:2]:  # not the centring one
            claim.statement = f"{model}: {claim.statement}"
            out.append(claim)
    return out


_a = style.single_panel(chains.panel_fig3a, chains.claims_fig3a, "a", "rank_1/2 vs width")
_b = style.single_panel(chains.panel_fig3b, chains.claims_fig3b, "b", "top-10 eigenvalues of M_ℓ")
register(
    Figure("markov/fig2", "Theorem 3 validation: rank_1/2 vs width (its panel a)", chains.FIG3A_CAPTION,
           {s: {"a": g} for s, g in chains.FIG3A_RUNS.items()}, *_a, alias_of="rank/fig3"),
    Figure("markov/fig3", "Top-10 eigenvalues of M_ℓ, nearly collinear input (its panel b)", chains.FIG3B_CAPTION,
           {s: {"b": g} for s, g in chains.FIG3B_RUNS.items()}, *_b, alias_of="rank/fig3"),
    Figure("markov/fig5", "Effect of depth on learning, Fashion-MNIST (rank/fig1)", depth.FIG1_CAPTION + " The long "
           "version ran 15 000 iterations at batch 32; this figure shows rank/fig1's runs.", depth.FIG1_RUNS,
           depth.plot_fig1, depth.claims_fig1, kind="train", alias_of="rank/fig1"),
    Figure("markov/fig6", "Pre-training, Fashion-MNIST depth 32 (rank/fig6)", layerwise.FIG6_CAPTION,
           layerwise.FIG6_RUNS, layerwise.plot_fig6, layerwise.claims_fig6, kind="train", alias_of="rank/fig6"),
    Figure("markov/fig7", "Breaking BN: VGG19 (top) and ResNet-50 (bottom)",
           breaking.FIG5_CAPTION + " " + breaking.FIG13_CAPTION,
           {s: {**{f"vgg_{k}": g for k, g in breaking.FIG5_RUNS[s].items()},
                **{f"resnet_{k}": g for k, g in breaking.FIG13_RUNS[s].items()}} for s in breaking.FIG5_RUNS},
           plot_fig7, claims_fig7, kind="train", alias_of="rank/fig5"),
    Figure("markov/fig8", "Directional gradient vanishing (rank/fig10)", alignment.FIG10_CAPTION,
           alignment.FIG10_RUNS, alignment.plot_fig10, alignment.claims_fig10, kind="train", alias_of="rank/fig10"),
    Figure("markov/fig9", "Regularity constant vs width", regularity.REG_CAPTION, regularity.REG_RUNS,
           regularity.plot_fig8, regularity.check_fig8, alias_of="rank/fig8"),
    Figure("markov/fig10", "E‖M‖_F² vs width", regularity.REG_CAPTION, regularity.REG_RUNS, regularity.plot_fig9,
           regularity.check_fig9, alias_of="rank/fig9"),
    Figure("markov/fig11", "Mean deduction for BN, VGG (rank/fig7)", breaking.FIG7_CAPTION, breaking.FIG7_RUNS,
           breaking.plot_fig7, breaking.claims_fig7, kind="train", alias_of="rank/fig7"),
)

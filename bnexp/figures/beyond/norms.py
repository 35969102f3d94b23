"""Per-sample normalisations against BN in deep random chains: beyond/norms-rank (rank of the last layer against
depth, rank/fig2's chains) and beyond/norms-ortho (orthogonality gap against depth, ortho/fig2a's chains).

The runs are the papers' own chain experiments (``configs/exp/rank_depth.yaml``, ``ortho_gap.yaml``) with
``chain.norm`` swept over BN and the per-sample LayerNorm, RMSNorm and GroupNorm (:mod:`bnexp.chains.lane`). The
papers prove their statements for BN, which normalises each feature over the batch; the per-sample norms normalise
each sample over its features, so the papers' arguments say nothing about them: their curves are measured, and the
claims state what was measured, with the numbers.
"""

from __future__ import annotations

import math

from bnexp.figures import Claim, Costs, Figure, RunGrid, register, stats, style
from bnexp.figures.beyond import setup_caption
from bnexp.figures.ortho.gap import FIG2_PAPER_CAPTION as ORTHO_FIG2_CAPTION
from bnexp.figures.rank.chains import FIG2_PAPER_CAPTION as RANK_FIG2_CAPTION
from bnexp.figures.stats import pick, seed_mean

PER_SAMPLE = ("layernorm", "rmsnorm", "groupnorm")


def depth_curve(ax, df, metric: str, norm: str, **look) -> None:
    """Mean ± 95% CI over seeds of ``metric`` against the layer (``step``) of the chain."""
    style.band(ax, stats.curve(df, metric, "step", chain__norm=norm), "step", kind="norm", name=norm, marker="", **look)


def deep_mean(df, metric: str, norm: str, **eq) -> float:
    """Mean of ``metric`` over the seeds and the measured layers of the deeper half of the chain."""
    sub = pick(df, metric, chain__norm=norm, **eq)
    return float(sub[sub["step"] >= sub["step"].max() / 2]["value"].mean())


def lowest_from(df, metric: str, norm: str, start: int, **eq) -> float:
    """The lowest seed mean of ``metric`` over measured layers ≥ ``start``."""
    sub = pick(df, metric, chain__norm=norm, **eq)
    return float(seed_mean(sub[sub["step"] >= start], ["step"])["value"].min())


def label(norm: str) -> str:
    return style.of("norm", norm)["label"]


# ------------------------------------------------------------------------------------------- beyond/norms-rank

RANK_NORMS = ("none", "bn_center", *PER_SAMPLE)
RANK_RUNS = {
    "paper": {"chains": RunGrid("beyond_norms_rank")},
    "quick": {"chains": RunGrid("beyond_norms_rank", {"chain.depth": 5000, "chain.measure_every": 25})},
    "smoke": {"chains": RunGrid("beyond_norms_rank", {"chain.depth": 2000, "chain.measure_every": 50, "n_seeds": 4})},
}
# What each per-sample norm does to the rank, as measured: "collapse" — r(H) averaged over the deeper half of the
# chain ≤ 1.5, the vanilla chain's fate; "above √d" — rank_1/2 (Tr M = d) stays above √d at every layer ≥ 50, BN's.
RANK_FOUND = {("layernorm", "linear"): "collapse", ("rmsnorm", "linear"): "collapse",
              ("groupnorm", "linear"): "above √d", ("layernorm", "relu"): "collapse",
              ("rmsnorm", "relu"): "collapse", ("groupnorm", "relu"): "collapse"}


def plot_rank(frames, scale):
    df = frames["chains"]
    d = int(df["chain.width"].iloc[0])
    fig, axes = style.new_figure(ncols=2, nrows=2, width=3.8)
    steps = [df["step"].min(), df["step"].max()]
    for col, act in enumerate(("linear", "relu")):
        sub = pick(df, chain__act=act)
        top, bottom = axes[col], axes[2 + col]
        for norm in RANK_NORMS:
            depth_curve(top, sub, "soft_rank", norm)
            depth_curve(bottom, sub, "rank_lower_bound", norm)
        style.reference(top, steps, [math.sqrt(d)] * 2, "√d", linestyle=":")
        for ax, ylabel in ((top, "rank$_{1/2}$ (Tr M = d)"), (bottom, "r(H) = Tr(M)²/‖M‖$_F^2$")):
            ax.set_yscale("log")
            ax.set_xlabel("total number of layers L")
            ax.set_ylabel(ylabel)
        top.set_title(f"{'Linear' if act == 'linear' else 'ReLU'} chain, d = N = {d} ({scale})")
    # one legend for the four panels, outside them: inside it would cover the curves between √d and BN's
    style.legend(fig, *axes[0].get_legend_handles_labels(), ncol=6, loc="upper center",
               bbox_to_anchor=(0.5, 0.0))
    return fig


def claims_rank(frames, scale):
    df = frames["chains"]
    root_d = math.sqrt(int(df["chain.width"].iloc[0]))
    claims = []
    for act in ("linear", "relu"):
        claims.append(Claim.at_most(f"{act}, vanilla: r(H) over the deeper half", deep_mean(df, "rank_lower_bound",
                                    "none", chain__act=act), 1.2, "rank collapses with depth (rank/fig2)"))
        claims.append(Claim.at_least(f"{act}, BN: lowest rank_1/2 (Eq. 3) over layers ≥ 50, over √d",
                                     lowest_from(df, "soft_rank_eq3", "bn_center", 50, chain__act=act) / root_d, 1.0,
                                     "BN stabilises the rank above √d (rank/fig2)"))
        for norm in PER_SAMPLE:
            if RANK_FOUND[norm, act] == "collapse":
                claims.append(Claim.at_most(f"{act}, {label(norm)}: r(H) over the deeper half (measured: collapses)",
                                            deep_mean(df, "rank_lower_bound", norm, chain__act=act), 1.5,
                                            "not covered by the papers (per-sample norm)"))
            else:
                claims.append(Claim.at_least(
                    f"{act}, {label(norm)}: lowest rank_1/2 over layers ≥ 50, over √d (measured: stays above)",
                    lowest_from(df, "soft_rank", norm, 50, chain__act=act) / root_d, 1.0,
                    "not covered by the papers (per-sample norm)"))
    return claims


RANK_CAPTION = (
    "Rank of the last layer of random chains against their depth L: rank_1/2 after rescaling H to Tr M = d (top; "
    "dotted: √d) and r(H) = Tr(M)²/‖M‖²_F (bottom), for no normalisation (rescaled every layer), BN (centred, as "
    "rank/fig2) and the per-sample LayerNorm, RMSNorm and GroupNorm (8 groups of 4 features, no affine part); linear "
    "(left) and ReLU (right) after the norm, H ← F(N(W H)); rank/fig2's setup otherwise (Gaussian input, d = N = 32, "
    "weights U[−√3, √3], no skip); mean and 95% CI over seeds. The rank paper's argument needs statistics over the "
    "batch and does not cover the per-sample norms. Measured: LayerNorm and RMSNorm collapse like the vanilla chain, "
    "in both panels: they rescale (and centre) each sample on its own, which leaves in place the product of random "
    "matrices that drives the collapse; GroupNorm, whose groups rescale each sample's feature blocks differently, "
    "keeps the linear chain's rank above √d but not the ReLU chain's (at quick scale: its lowest linear rank_1/2 "
    "1.5·√d, its ReLU r(H) ≈ 1.25 against BN's ≈ 5). The claims give the numbers of this run. Quick scale: 5000 "
    "layers instead of 50 000.")
RANK_PAPER_CAPTION = setup_caption(RANK_FIG2_CAPTION, "rank")
RANK_COSTS = Costs(
    quick="≈ 15 s, 2-core CPU", paper="≈ 1 min, 2-core CPU (estimated: 2.5 × rank/fig2's measured 20 s)",
    data="none", basis="10 chains (5 norms × 2 activations) of 50 000 layers, 10 seeds; rank/fig2's 4 chains of the "
                       "same size took 16 s on a 2-core CPU.")

register(Figure("beyond/norms-rank", "Rank vs depth for BN and the per-sample norms (LayerNorm, RMSNorm, GroupNorm)",
                RANK_CAPTION, RANK_RUNS, plot_rank, claims_rank, paper_caption=RANK_PAPER_CAPTION, costs=RANK_COSTS))

# ------------------------------------------------------------------------------------------ beyond/norms-ortho

ORTHO_NORMS = ("none", "bn_theory", *PER_SAMPLE)
ORTHO_RUNS = {"paper": {"chains": RunGrid("beyond_norms_ortho")},
              "quick": {"chains": RunGrid("beyond_norms_ortho", {"n_seeds": 10})},
              "smoke": {"chains": RunGrid("beyond_norms_ortho", {"chain.depth": 200, "n_seeds": 4})}}
# As RANK_FOUND: "rank one" — V over the deeper half ≥ 0.7 (the vanilla chain's rank-one Gram, V = √(1 − 1/N) =
# 0.87 at N = 4); "falls" — V over the deeper half at most half the input's, BN's.
ORTHO_FOUND = {"layernorm": "rank one", "rmsnorm": "rank one", "groupnorm": "falls"}


def input_gap(df, norm: str) -> float:
    sub = pick(df, "orthogonality_gap", chain__norm=norm)
    return float(sub[sub["step"] == 0]["value"].mean())


def plot_ortho(frames, scale):
    df = frames["chains"]
    fig, axes = style.new_figure(width=6.2, height=3.0)
    ax = axes[0]
    for norm in ORTHO_NORMS:
        depth_curve(ax, df, "orthogonality_gap", norm)
    n = int(df["chain.batch"].iloc[0])
    style.reference(ax, [df["step"].min(), df["step"].max()], [math.sqrt(1 - 1 / n)] * 2,
                    "rank-one Gram, √(1 − 1/N)", linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("layer ℓ")
    ax.set_ylabel("orthogonality gap V(H$_ℓ$)")
    ax.set_title(f"Linear chain, d = {int(df['chain.width'].iloc[0])}, N = {n} ({scale})")
    style.legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: the curves fill the axes
    return fig


def claims_ortho(frames, scale):
    df = frames["chains"]
    claims = [
        Claim.at_least("vanilla: V over the deeper half", deep_mean(df, "orthogonality_gap", "none"), 0.8,
                       "the Gram stays rank one without BN"),
        Claim.at_most("BN: V over the deeper half / V of the input",
                      deep_mean(df, "orthogonality_gap", "bn_theory") / input_gap(df, "bn_theory"), 0.5,
                      "BN orthogonalises: V falls with depth (ortho/fig2a)"),
    ]
    for norm in PER_SAMPLE:
        value = deep_mean(df, "orthogonality_gap", norm)
        if ORTHO_FOUND[norm] == "rank one":
            claims.append(Claim.at_least(f"{label(norm)}: V over the deeper half (measured: the Gram goes back to rank "
                                         "one)", value, 0.7, "not covered by the paper (per-sample norm)"))
        else:
            claims.append(Claim.at_most(f"{label(norm)}: V over the deeper half / V of the input (measured: falls)",
                                        value / input_gap(df, norm), 0.5, "not covered by the paper (per-sample norm)"))
    return claims


ORTHO_CAPTION = (
    "Orthogonality gap V(H_ℓ) = ‖HᵀH/‖H‖²_F − I_N/N‖_F (ortho paper Eq. 2) along a linear random chain H ← N(W H), for "
    "no normalisation (rescaled every layer), the ortho paper's BN (each feature to unit norm over the batch, no "
    "centring) and the per-sample LayerNorm, RMSNorm and GroupNorm (8 groups of 4 features, no affine part); "
    "ortho/fig2a's setup at one width (d = 32, N = 4, W ~ N(0, 1), the nearly rank-one input x_0 = e_1, x_j = "
    "1e-6·e_{j+1}, the Gram sampler); mean and 95% CI over seeds; dotted: the gap of a rank-one Gram with equal "
    "norms. The paper's argument is about BN. Measured: LayerNorm and RMSNorm lift the input's tiny samples to unit "
    "norm at the first layer, so V first drops, then the product of random matrices takes the Gram back to rank one, "
    "as without normalisation (V ≈ 0.84 over the deeper half at quick scale); GroupNorm keeps V down, above BN's level "
    "(0.41 and 0.24 of the input's gap). The claims give the numbers of this run.")
ORTHO_PAPER_CAPTION = setup_caption(ORTHO_FIG2_CAPTION, "ortho")
ORTHO_COSTS = Costs(
    quick="≈ 5 s, 2-core CPU", paper="≈ 10 s, 2-core CPU (estimated from ortho/fig2's measured paper scale)",
    data="none", basis="5 chains (one per norm) of 500 layers, d = 32, N = 4, 20 seeds: smaller than ortho/fig2a's "
                       "measured paper-scale sweep (six widths to 512, 10 s).")

register(Figure("beyond/norms-ortho", "Orthogonality gap vs depth for BN and the per-sample norms", ORTHO_CAPTION,
                ORTHO_RUNS, plot_ortho, claims_ortho, paper_caption=ORTHO_PAPER_CAPTION, costs=ORTHO_COSTS))

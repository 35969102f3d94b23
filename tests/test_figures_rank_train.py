"""Every training figure of the rank-collapse papers regenerated at smoke scale, with its claims asserted.

Smoke scale trains small networks on synthetic data for a few epochs (seconds each); the claims are the
figures' quick-scale statements (the rank_markov spec's assertions), computed from the runs.
"""

from __future__ import annotations

import pytest
from figure_checks import reproduce_and_check

from bnexp import figures

GROUPS = [
    ["rank/fig1", "markov/fig5"],
    ["rank/fig4", "rank/fig11"],
    ["rank/fig12"],
    ["rank/fig5", "rank/fig7", "rank/fig13", "markov/fig7", "markov/fig11"],
    ["rank/fig6", "markov/fig6"],
    ["rank/fig10", "markov/fig8"],
]


def test_groups_cover_every_training_figure_of_the_rank_papers():
    ids = sorted(f.id for f in figures.all_figures() if f.paper in ("rank", "markov") and f.kind == "train")
    assert sorted(f for group in GROUPS for f in group) == ids


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g[0])
def test_reproduce_at_smoke_scale_and_claims_hold(group, outputs, capsys):
    reproduce_and_check(group, capsys)


def test_paper_scale_configs_are_the_papers_setups():
    """The paper-scale runs compose to the setups the captions state (no training here)."""
    fig1 = figures.get("rank/fig1").grids("paper")["runs"].configs()
    assert {c.data.name for c in fig1} == {"fashion_mnist"} and {c.model.width for c in fig1} == {128}
    assert sorted({c.model.depth for c in fig1}) == list(range(1, 34, 2)) and {c.optim.epochs for c in fig1} == {75}
    fig5 = figures.get("rank/fig5").grids("paper")
    runs = [c for g in fig5.values() for c in g.configs()]
    assert {(c.norm.name, c.init.name) for c in runs} == {("bn_torch", "torch_default"), ("bn_torch", "asym"),
                                                         ("bn_nocenter", "torch_default")}
    assert {c.model.name for c in runs} == {"vgg"} and {c.data.name for c in runs} == {"cifar10"}
    fig13 = [c for g in figures.get("rank/fig13").grids("paper").values() for c in g.configs()]
    assert {c.model.name for c in fig13} == {"resnet"}
    fig6 = figures.get("rank/fig6").grids("paper")
    assert sorted(c.pretrain.iters for c in fig6["pretrained"].configs()) == [25, 75]
    assert {c.model.depth for g in fig6.values() for c in g.configs()} == {32}

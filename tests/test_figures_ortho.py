"""Every figure of the ortho paper's init-time random-matrix experiments regenerated at smoke scale, with its
claims asserted (ortho/table1 reads the runs of ortho/fig2b, so they form one group)."""

from __future__ import annotations

import pytest
from figure_checks import reproduce_and_check

from bnexp import cli, figures

GROUPS = [["ortho/fig1"], ["ortho/fig2", "ortho/table1"], ["ortho/fig6"]]
TRAINING = {"ortho/fig3", "ortho/fig4", "ortho/fig5", "ortho/fig7"}  # other modules' figures, if registered


def test_groups_cover_the_random_matrix_figures():
    ours = {f.id for f in figures.all_figures() if f.paper == "ortho" and f.id not in TRAINING}
    assert sorted(f for group in GROUPS for f in group) == sorted(ours)


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g[0])
def test_reproduce_at_smoke_scale_and_claims_hold(group, outputs, capsys):
    reproduce_and_check(group, capsys)


def test_table1_quotes_the_paper_and_adds_a_measured_row(outputs):
    assert cli.main(["reproduce", "ortho/table1", "--scale", "smoke"]) == 0
    text = figures.get("ortho/table1").output_stem().with_suffix(".md").read_text()
    assert "O(width^-1/4)" in text and "Corollary 3" in text and "(measured)" in text


def test_paper_scale_uses_the_papers_sizes():
    fig2 = figures.get("ortho/fig2").grids("paper")
    b = fig2["b"].configs()
    assert sorted(c.chain.width for c in b) == [16, 32, 64, 128, 256, 512]
    assert {(c.n_seeds, c.chain.depth, c.chain.batch, c.chain.sampler, c.chain.burn_in) for c in b} == {
        (20, 500, 4, "gram", 0)}
    assert {(c.chain.width, c.chain.depth, c.n_seeds) for c in fig2["a"].configs()} == {(32, 50, 20), (512, 50, 20)}
    fig6 = figures.get("ortho/fig6").grids("paper")["chains"].configs()
    assert {c.chain.act for c in fig6} == {"tanh_plus_one", "relu", "tanh", "sin"}
    assert {(c.chain.depth, c.chain.reference_depth, c.n_seeds) for c in fig6} == {(1000, 5000, 5)}
    fig1 = figures.get("ortho/fig1").grids("paper")
    assert {(c.chain.width, c.chain.batch, c.n_seeds) for g in fig1.values() for c in g.configs()} == {(32, 2, 20)}

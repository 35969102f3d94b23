"""Every init-time figure of the rank-collapse papers regenerated at smoke scale, with its claims asserted
(the training figures: tests/test_figures_rank_train.py).

Each group shares its runs (aliases of the other paper version read the same runs). The claims are numbers
computed from the runs, compared with the paper's statements under the tolerances in the figure modules.
"""

from __future__ import annotations

import pytest
from figure_checks import reproduce_and_check

from bnexp import cli, figures

GROUPS = [
    ["rank/fig2"],
    ["rank/fig3", "markov/fig2", "markov/fig3"],
    ["rank/fig8", "rank/fig9", "markov/fig9", "markov/fig10"],
    ["markov/fig1"],
    ["markov/fig4"],
    ["markov/table1"],
]


def test_groups_cover_every_init_figure_of_the_rank_papers():
    ids = sorted(f.id for f in figures.all_figures() if f.paper in ("rank", "markov") and f.kind != "train")
    assert sorted(f for group in GROUPS for f in group) == ids


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g[0])
def test_reproduce_at_smoke_scale_and_claims_hold(group, outputs, capsys):
    reproduce_and_check(group, capsys)
    # the report page lists the plotted figures with their claims
    assert cli.main(["report"]) == 0
    page = (outputs / "report" / "index.html").read_text()
    for fig_id in group:
        assert f"<section id='{fig_id.replace('/', '-')}'>" in page and "<table class=claims>" in page

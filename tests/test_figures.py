"""Every init-time figure of the rank-collapse papers regenerated at smoke scale, with its claims asserted
(the training figures: tests/test_figures_rank_train.py).

Each group shares its runs (aliases of the other paper version read the same runs). The claims are numbers
computed from the runs, compared with the paper's statements under the tolerances in the figure modules.
"""

from __future__ import annotations

import json

import pytest

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
    code = cli.main(["reproduce", *group, "--scale", "smoke"])
    out = capsys.readouterr().out
    records = {}
    for fig_id in group:
        fig = figures.get(fig_id)
        stem = fig.output_stem()
        assert stem.with_suffix(".png").stat().st_size > 1000 and stem.with_suffix(".pdf").exists()
        record = records[fig_id] = json.loads(stem.with_suffix(".claims.json").read_text())  # plain JSON types
        assert record["scale"] == "smoke" and record["caption"] == fig.caption and record["claims"]
        assert all(isinstance(c["passed"], bool) for c in record["claims"])
        failing = [c for c in record["claims"] if not c["passed"]]
        assert not failing, f"{fig_id}: {failing}\n{out}"
        if fig.table is not None:
            assert stem.with_suffix(".csv").exists() and stem.with_suffix(".md").exists()
    assert code == 0
    # plotting again reads only the saved CSVs and gives the same claims
    assert cli.main(["plot", group[0], "--scale", "smoke"]) == 0
    assert json.loads(figures.get(group[0]).output_stem().with_suffix(".claims.json").read_text()) == records[group[0]]
    # the report page lists the plotted figures with their claims
    assert cli.main(["report"]) == 0
    page = (outputs / "report.html").read_text()
    for fig_id in group:
        assert f"id='{fig_id}'" in page and "claims pass" in page

"""The depth paper's init-time figures (and ortho/fig5) regenerated at smoke scale, with their claims asserted.

The claims are numbers computed from the runs, compared with the paper's statements under the tolerances in
bnexp/figures/depth.py and ortho_nets.py.
"""

from __future__ import annotations

import pytest
from figure_checks import reproduce_and_check

from bnexp import figures

GROUPS = [
    ["depth/fig1"],
    ["depth/fig2"],
    ["depth/fig3"],
    ["depth/fig5", "depth/figF1"],
    ["depth/figF2"],
    ["depth/figH5"],
    ["depth/figH6"],
    ["depth/figJ1"],
    ["ortho/fig5"],
]
MODULES = ("bnexp.figures.depth", "bnexp.figures.ortho_nets")


def test_groups_cover_every_figure_of_these_modules():
    ids = sorted(f.id for f in figures.all_figures() if f.plot.__module__ in MODULES)
    assert sorted(f for group in GROUPS for f in group) == ids


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g[0])
def test_reproduce_at_smoke_scale_and_claims_hold(group, outputs, capsys):
    reproduce_and_check(group, capsys)

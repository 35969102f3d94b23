"""Every registered figure, found through the registry (no list kept by hand): at smoke scale it reproduces
with every claim passing and reads well (tests/figure_checks.py); at every scale its sweeps compose and
validate; the registry agrees with the inventory of the papers' figures (docs/figures.md), where a figure not
built yet is listed in bnexp/figures/not_yet.yaml, which the README shows.

Figures that read the same runs (aliases of the other paper version, figures sharing a sweep) are reproduced
together, so their runs are computed once; the groups are found from the registry.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from figure_checks import reproduce_and_check

from bnexp import cli, engines, figures
from bnexp.data import vision

ROOT = Path(__file__).resolve().parents[1]
ALL = figures.all_figures()


def smoke_groups() -> list[list[str]]:
    """Figures joined when they share a smoke-scale sweep or one is an alias of the other (union–find)."""
    parent = {f.id: f.id for f in ALL}

    def find(i: str) -> str:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[str, str] = {}
    for fig in ALL:
        links = [owner.setdefault(g.command(), fig.id) for g in fig.grids("smoke").values()]
        links += [fig.alias_of] if fig.alias_of else []
        for other in links:
            parent[find(fig.id)] = find(other)
    groups: dict[str, list[str]] = {}
    for fig in ALL:
        groups.setdefault(find(fig.id), []).append(fig.id)
    return list(groups.values())


@pytest.mark.parametrize("group", smoke_groups(), ids=lambda g: "+".join(g))
def test_reproduce_at_smoke_scale_and_claims_hold(group, outputs, capsys):
    reproduce_and_check(group, capsys)
    # the report page lists the plotted figures with their claims
    assert cli.main(["report"]) == 0
    page = (outputs / "report" / "index.html").read_text()
    for fig_id in group:
        assert f"<section id='{fig_id.replace('/', '-')}'>" in page and "<table class=claims>" in page


@pytest.mark.parametrize("scale", figures.SCALES)
@pytest.mark.parametrize("fig_id", [f.id for f in ALL])
def test_every_scale_composes_and_validates(fig_id, scale):
    """The sweeps of every scale compose to valid configs without running anything."""
    fig = figures.get(fig_id)
    grids = fig.grids(scale)
    assert grids, f"{fig_id} has no runs at {scale}"
    for name, grid in grids.items():
        configs = grid.configs()
        assert configs, f"{fig_id} [{name}] composes no run at {scale}"
        for cfg in configs:
            engines.validate(cfg)
    # the datasets read, from one config per data choice, are those of every run
    every = {cfg.data.name for grid in grids.values() for cfg in grid.configs() if "data" in cfg}
    assert fig.datasets(scale) == sorted(every & set(vision.SPECS))


def inventory_ids(text: str) -> list[str]:
    """Ids of the first column of the inventory's tables: ``depth/figG1, figG2`` and ``depth/figH1..H4`` expand."""
    ids = []
    for cell in re.findall(r"^\| ([a-z]+/[^|]+?) \|", text, flags=re.M):
        paper, _, rest = cell.partition("/")
        for part in (p.strip() for p in rest.split(",")):
            if m := re.fullmatch(r"([a-zA-Z]+)(\d+)\.\.([A-Za-z]*)(\d+)", part):
                ids += [f"{paper}/{m[1]}{n}" for n in range(int(m[2]), int(m[4]) + 1)]
            else:
                ids.append(f"{paper}/{part}")
    return ids


def test_inventory_parser_expands_ranges():
    text = "| id | what |\n|---|---|\n| depth/figH1..H4 | x |\n| markov/fig2, fig3 | y |\n| ortho/table1 | z |\n"
    assert inventory_ids(text) == ["depth/figH1", "depth/figH2", "depth/figH3", "depth/figH4", "markov/fig2",
                                   "markov/fig3", "ortho/table1"]


def test_registry_agrees_with_the_inventory():
    """Every figure of the papers is registered or listed as not yet built, never both, and nothing else is."""
    listed = inventory_ids((ROOT / "docs" / "figures.md").read_text(encoding="utf-8"))
    registered = {f.id for f in ALL}
    not_yet = set(figures.not_yet())
    assert len(listed) == len(set(listed)), "an id appears twice in docs/figures.md"
    assert not registered & not_yet, f"registered and listed as not yet: {sorted(registered & not_yet)}"
    assert set(listed) == registered | not_yet, (
        f"in docs/figures.md only: {sorted(set(listed) - registered - not_yet)}; "
        f"registered or not_yet.yaml only: {sorted((registered | not_yet) - set(listed))}")


def test_inventory_is_the_papers_inventory():
    """docs/figures.md keeps the ids of the shared inventory it was taken from, where that is at hand."""
    shared = ROOT.parent / "shared" / "FIGURES.md"
    if not shared.exists():
        pytest.skip("no shared inventory next to this checkout")
    ours = [i for i in inventory_ids((ROOT / "docs" / "figures.md").read_text(encoding="utf-8"))
            if not i.startswith("beyond/")]  # figures beyond the papers are ours, not in the papers' inventory
    assert inventory_ids(shared.read_text(encoding="utf-8")) == ours

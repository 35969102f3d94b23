"""The check every figure test makes: reproduce a group of figures at smoke scale, then assert that each one
wrote its plot, its claims (plain JSON, every claim passing) and, for tables, its .csv/.md; that it reads well
(bnexp.figures.legibility on the figure drawn again from the same runs and laid out as ``style.save`` lays it out:
no overlapping texts, no legend on data points, no formula outside mathtext, no text below 7 pt); and that
plotting again from the saved runs alone gives the same claims."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt

from bnexp import cli, figures
from bnexp.figures import legibility, style


def legibility_problems(fig_id: str, scale: str = "smoke") -> list[str]:
    """What keeps figure ``fig_id`` from reading well, drawn from its finished runs and laid out as when saved."""
    fig = figures.get(fig_id)
    drawn = fig.plot(figures.frames_for(fig, scale), scale)
    try:
        style.layout(drawn)
        return legibility.problems(drawn)
    finally:
        plt.close(drawn)


def reproduce_and_check(group: list[str], capsys) -> dict[str, dict]:
    """Run ``bnexp reproduce <group> --scale smoke`` and assert the above; returns each figure's claims record."""
    code = cli.main(["reproduce", *group, "--scale", "smoke"])
    out = capsys.readouterr().out
    records = {}
    for fig_id in group:
        fig = figures.get(fig_id)
        stem = fig.output_stem()
        assert stem.with_suffix(".png").stat().st_size > 1000 and stem.with_suffix(".pdf").exists(), out
        record = records[fig_id] = json.loads(stem.with_suffix(".claims.json").read_text())
        assert record["scale"] == "smoke" and record["caption"] == fig.caption and record["claims"]
        assert all(isinstance(c["passed"], bool) for c in record["claims"])
        failing = [c for c in record["claims"] if not c["passed"]]
        assert not failing, f"{fig_id}: {failing}\n{out}"
        if fig.table is not None:
            assert stem.with_suffix(".csv").exists() and stem.with_suffix(".md").exists()
    assert code == 0, out
    unreadable = {fig_id: found for fig_id in group if (found := legibility_problems(fig_id))}
    assert not unreadable, "\n".join(f"{fig_id}: {p}" for fig_id, found in unreadable.items() for p in found)
    # plotting again reads only the saved runs and gives the same claims
    assert cli.main(["plot", group[0], "--scale", "smoke"]) == 0
    assert json.loads(figures.get(group[0]).output_stem().with_suffix(".claims.json").read_text()) == records[group[0]]
    return records

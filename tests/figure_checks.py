"""The check every figure test makes: reproduce a group of figures at smoke scale, then assert that each one
wrote its plot, its claims (plain JSON, every claim passing) and, for tables, its .csv/.md; and that plotting
again from the saved runs alone gives the same claims."""

from __future__ import annotations

import json

from bnexp import cli, figures


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
    # plotting again reads only the saved runs and gives the same claims
    assert cli.main(["plot", group[0], "--scale", "smoke"]) == 0
    assert json.loads(figures.get(group[0]).output_stem().with_suffix(".claims.json").read_text()) == records[group[0]]
    return records

"""depth/tableE1 (numerical rank of input batches) regenerated at smoke scale, with its claims asserted."""

from __future__ import annotations

import json

from bnexp import cli, figures


def test_tableE1_at_smoke_scale_and_claims_hold(outputs, capsys):
    code = cli.main(["reproduce", "depth/tableE1", "--scale", "smoke"])
    out = capsys.readouterr().out
    fig = figures.get("depth/tableE1")
    stem = fig.output_stem()
    assert stem.with_suffix(".png").stat().st_size > 1000 and stem.with_suffix(".pdf").exists()
    record = json.loads(stem.with_suffix(".claims.json").read_text())
    assert record["scale"] == "smoke" and record["caption"] == fig.caption and len(record["claims"]) == 3
    failing = [c for c in record["claims"] if not c["passed"]]
    assert not failing, f"{failing}\n{out}"
    assert code == 0
    table = stem.with_suffix(".md").read_text()
    assert "float32 Gram" in table and "exact (float64 X)" in table and "n=512" in table
    # plotting again reads only the saved runs and gives the same claims
    assert cli.main(["plot", "depth/tableE1", "--scale", "smoke"]) == 0
    assert json.loads(stem.with_suffix(".claims.json").read_text()) == record


def test_paper_and_quick_scales_name_their_data():
    fig = figures.get("depth/tableE1")
    paper = {cfg.data.name for grid in fig.grids("paper").values() for cfg in grid.configs()}
    quick = {cfg.data.name for grid in fig.grids("quick").values() for cfg in grid.configs()}
    assert paper == {"mnist", "fashion_mnist", "cifar10", "cifar100"} and quick == {"fashion_mnist", "powerlaw"}
    for grid in fig.grids("paper").values():
        for cfg in grid.configs():
            assert cfg.batches == 100 and cfg.data.normalize == "none" and cfg.data.n_train is None
    assert "Fashion-MNIST" in fig.caption and "dataset-fashion-mnist" in fig.caption

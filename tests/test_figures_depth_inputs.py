"""depth/tableE1 (numerical rank of input batches) regenerated at smoke scale, with its claims asserted."""

from __future__ import annotations

from figure_checks import reproduce_and_check

from bnexp import figures


def test_tableE1_at_smoke_scale_and_claims_hold(outputs, capsys):
    record = reproduce_and_check(["depth/tableE1"], capsys)["depth/tableE1"]
    assert len(record["claims"]) == 3
    stem = figures.get("depth/tableE1").output_stem()
    table = stem.with_suffix(".md").read_text()
    assert "float32 Gram" in table and "exact (float64 X)" in table and "n=512" in table


def test_paper_and_quick_scales_name_their_data():
    fig = figures.get("depth/tableE1")
    paper = {cfg.data.name for grid in fig.grids("paper").values() for cfg in grid.configs()}
    quick = {cfg.data.name for grid in fig.grids("quick").values() for cfg in grid.configs()}
    assert paper == {"mnist", "fashion_mnist", "cifar10", "cifar100"} and quick == {"fashion_mnist", "powerlaw"}
    for grid in fig.grids("paper").values():
        for cfg in grid.configs():
            assert cfg.batches == 100 and cfg.data.normalize == "none" and cfg.data.n_train is None
    assert "Fashion-MNIST" in fig.caption and "dataset-fashion-mnist" in fig.caption

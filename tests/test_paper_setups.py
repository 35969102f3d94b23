"""The paper-scale runs of figures compose to the setups their captions state (nothing is trained), and the
tables carry what the papers print. Every figure's smoke reproduction and claims: tests/test_figures.py."""

from __future__ import annotations

from bnexp import cli, figures


def test_tableE1_table_has_both_ranks_and_every_batch_size(outputs):
    assert cli.main(["reproduce", "depth/tableE1", "--scale", "smoke"]) == 0
    table = figures.get("depth/tableE1").output_stem().with_suffix(".md").read_text()
    assert "float32 Gram" in table and "exact (float64 X)" in table and "n=512" in table


def test_rank_training_figures_paper_scale_is_the_papers_setup():
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



def test_ortho_paper_scale_uses_the_papers_sizes():
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



def test_table1_quotes_the_paper_and_adds_a_measured_row(outputs):
    assert cli.main(["reproduce", "ortho/table1", "--scale", "smoke"]) == 0
    text = figures.get("ortho/table1").output_stem().with_suffix(".md").read_text()
    assert "O(width^-1/4)" in text and "Corollary 3" in text and "(measured)" in text



def test_tableE1_paper_and_quick_scales_name_their_data():
    fig = figures.get("depth/tableE1")
    paper = {cfg.data.name for grid in fig.grids("paper").values() for cfg in grid.configs()}
    quick = {cfg.data.name for grid in fig.grids("quick").values() for cfg in grid.configs()}
    assert paper == {"mnist", "fashion_mnist", "cifar10", "cifar100"} and quick == {"fashion_mnist", "powerlaw"}
    for grid in fig.grids("paper").values():
        for cfg in grid.configs():
            assert cfg.batches == 100 and cfg.data.normalize == "none" and cfg.data.n_train is None
    assert "Fashion-MNIST" in fig.caption and "dataset-fashion-mnist" in fig.caption

"""The legibility checks (bnexp.figures.legibility) on figures built to break one rule each, and the shared style's
layout (bnexp.figures.style.layout, .table) that every saved figure goes through: it must leave none of them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bnexp.figures import legibility, style


@pytest.fixture
def new():
    """A fresh single-axes figure, closed after the test."""
    made = []

    def make(width: float = 4.0, height: float = 3.0):
        fig, ax = plt.subplots(figsize=(width, height))
        made.append(fig)
        return fig, ax

    yield make
    for fig in made:
        plt.close(fig)


def clean(ax) -> None:
    """Two curves in the lower half of the axes, labelled, legend in the (empty) upper left."""
    x = np.linspace(0, 10, 21)
    ax.plot(x, 0.1 * x, marker="o", label="slow")
    ax.plot(x, 0.2 * x, marker="s", label="fast")
    ax.set_ylim(0, 5)
    ax.set_xlabel("layer")
    ax.set_ylabel(r"$\ln \|\nabla_{W_1} L\|_F$")
    ax.set_title("two curves")
    ax.legend(loc="upper left")


def test_a_clean_figure_has_no_problem(new):
    fig, ax = new()
    clean(ax)
    assert legibility.problems(fig) == []


def test_overlapping_texts_are_named(new):
    fig, ax = new()
    clean(ax)
    ax.text(5, 4, "first note")
    ax.text(5.3, 4.02, "second note")
    found = legibility.problems(fig)
    assert len(found) == 1 and "overlap" in found[0] and "'first note'" in found[0] and "'second note'" in found[0]


def test_texts_side_by_side_do_not_overlap(new):
    fig, ax = new()
    clean(ax)
    ax.text(3, 4, "left note")
    ax.text(7, 4, "right note")
    assert legibility.problems(fig) == []


def test_a_legend_on_points_of_a_line_is_named(new):
    fig, ax = new()
    x = np.linspace(0, 10, 21)
    ax.plot(x, np.full_like(x, 4.8), marker="o", label="plateau")  # along the top: under an upper-right legend
    ax.set_ylim(0, 5)
    ax.legend(loc="upper right")
    found = legibility.problems(fig)
    assert len(found) == 1 and "legend ['plateau']" in found[0] and "line 'plateau'" in found[0]
    # the oracle: the points whose display position lies inside the legend's box
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent()
    xy = ax.transData.transform(np.column_stack([x, np.full_like(x, 4.8)]))
    inside = int(((xy[:, 0] > box.x0 + 2) & (xy[:, 0] < box.x1 - 2) & (xy[:, 1] > box.y0 + 2)
                  & (xy[:, 1] < box.y1 - 2)).sum())
    assert inside > 0 and f"covers {inside} point(s)" in found[0]


def test_points_outside_the_axes_are_not_drawn_so_not_covered(new):
    fig, ax = new()
    ax.plot([9, 9.5, 10], [7, 8, 9], marker="o", label="clipped")  # above the y limit: never drawn
    ax.plot([0, 1], [0, 0.5], marker="o", label="low")
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5)
    ax.legend(loc="upper right")
    assert legibility.problems(fig) == []


@pytest.mark.parametrize("label", ["ln ‖∇_{W_1} L‖_F", "x^{2}", r"\alpha", "rank_1/2", "W_t+1", "d^1.5",
                                   r"$x$ and y_{1}"])
def test_a_formula_written_as_plain_text_is_named(new, label):
    fig, ax = new()
    clean(ax)
    ax.set_xlabel(label)
    found = legibility.problems(fig)
    assert len(found) == 1 and "formula outside $…$" in found[0] and repr(label) in found[0]


@pytest.mark.parametrize("label", [r"$\ln \|\nabla_{W_1} L\|_F$", r"rank $H_\ell$ of $\mathrm{fc}_{0}$",
                                   "U(0, 2/√fan_in)", "a cost of $5 and $6", "top-10 eigenvalues"])
def test_mathtext_and_identifiers_are_no_formula_problem(label):
    assert legibility.plain_formula(label) is None


def test_text_below_seven_points_is_named(new):
    fig, ax = new()
    clean(ax)
    ax.text(5, 4, "tiny", fontsize=6.5)
    ax.text(2, 4, "fine", fontsize=7)
    found = legibility.problems(fig)
    assert len(found) == 1 and "below 7 pt (6.5 pt)" in found[0] and "'tiny'" in found[0]


def test_only_drawn_tick_labels_count(new):
    fig, ax = new()
    clean(ax)
    fig.canvas.draw()
    ticks = [t for t, where in legibility.placed(fig).items() if where.startswith("x tick label")]
    low, high = ax.get_xlim()
    assert ticks and all(low - 1e-9 <= float(t.get_text().replace("−", "-")) <= high + 1e-9 for t in ticks)


def test_layout_moves_a_legend_off_the_data(new):
    fig, ax = new()
    x = np.linspace(0, 10, 21)
    ax.plot(x, np.full_like(x, 4.8), marker="o", label="plateau")
    ax.plot(x, np.full_like(x, 0.2), marker="o", label="floor")
    ax.set_ylim(0, 5)
    style.legend(ax, loc="upper right")
    assert legibility.problems(fig)
    style.layout(fig)
    assert legibility.problems(fig) == []


def test_layout_puts_a_legend_with_no_room_outside_and_widens_the_figure(new):
    fig, ax = new()
    x = np.linspace(0, 10, 41)
    for i in range(6):  # points everywhere: no corner, edge or headroom is free
        ax.plot(x, (x * (i + 1)) % 5, marker=".", linestyle="", label=f"series {i}")
    ax.set_ylim(0, 5)
    ax.set_autoscaley_on(False)
    style.legend(ax)
    width = fig.get_figwidth()
    style.layout(fig)
    fig.canvas.draw()
    assert legibility.problems(fig) == []
    assert ax.get_legend().get_window_extent().x0 > ax.get_window_extent().x1  # right of the axes
    assert fig.get_figwidth() > width


def test_layout_wraps_a_title_wider_than_its_axes_outside_mathtext(new):
    fig, ax = new(width=2.5)
    clean(ax)
    ax.set_title(r"a long title about $\ln \|\nabla_{W_1} L\|_F$ that cannot fit in a narrow panel at all")
    style.layout(fig)
    title = ax.get_title()
    assert "\n" in title and r"$\ln \|\nabla_{W_1} L\|_F$" in title
    assert legibility.problems(fig) == []


def test_layout_sets_colliding_log_tick_labels_as_plain_numbers():
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.4))
    try:
        for ax in axes:
            ax.plot([1, 2, 3, 4, 5, 6], [0.2, 0.3, 0.4, 0.5, 0.55, 0.6])
            ax.set_xscale("log")
        assert any("overlap" in p for p in legibility.problems(fig))  # 2×10⁰, 3×10⁰, … collide
        style.layout(fig)
        assert legibility.problems(fig) == []
        labels = {t.get_text() for t, where in legibility.placed(fig).items()
                  if where.startswith("x tick label of axes 0")}
        assert {"1", "2", "3"} <= labels <= {str(n) for n in range(1, 11)}
    finally:
        plt.close(fig)


def test_table_is_set_at_a_readable_size_without_margins():
    frame = pd.DataFrame({"network": ["BN", "no BN, unit scale"], "theory": [r"$\mathrm{rank}_\tau(H_\ell) = 1$", "—"],
                          "d=8": [3.21, 1.0]})
    fig = style.table(frame, "a table")
    try:
        style.layout(fig)
        assert legibility.problems(fig) == []
        fig.canvas.draw()
        table = fig.axes[0].tables[0]
        cells = table.get_celld()
        assert len(cells) == 3 * 3 and all(c.get_text().get_fontsize() == 8 for c in cells.values())
        box = table.get_window_extent(fig.canvas.get_renderer())
        page = fig.bbox
        assert box.width >= 0.99 * page.width and box.height >= 0.99 * page.height  # the table is the figure
        # each column is as wide as its widest text plus a margin: no text runs over its cell
        for cell in cells.values():
            assert cell.get_text().get_window_extent().width < cell.get_window_extent().width
    finally:
        plt.close(fig)


def test_save_lays_out_before_writing(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.linspace(0, 10, 21)
    ax.plot(x, np.full_like(x, 4.8), marker="o", label="plateau")
    ax.set_ylim(0, 5)
    style.legend(ax, loc="upper right")
    paths = style.save(fig, tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    assert legibility.problems(fig) == []

"""Whether a drawn figure can be read: pure checks over a matplotlib Figure, each problem named by its text.

:func:`problems` draws the figure once and applies four rules to what would be saved (sizes in points, which
``savefig`` keeps: ``bbox_inches="tight"`` crops, it never rescales):

* **overlap** — the boxes of two visible, non-empty texts (titles, axis labels, drawn tick labels, offset texts,
  annotations, legend entries and titles, table cells, figure texts) intersect by more than :data:`TOLERANCE_PT`
  in both directions;
* **legend covers data** — a vertex of a visible line (every ``Line2D`` of every axes: curves, markers and the
  grey reference curves alike; an ``axhline`` has its vertices on the axes' edges, so it never counts) that is
  drawn (inside its axes) lies inside a legend's box shrunk by :data:`TOLERANCE_PT`. Segments between vertices
  may pass under a legend: the data are the vertices;
* **formula as plain text** — outside ``$…$`` a text holds ``_{``, ``^{`` or a ``\\command`` (shown literally,
  braces and all), or any sub- or superscript: a ``^``, or a ``_`` that does not join two words of letters (an
  identifier such as ``fan_in`` may stay; ``rank_1/2``, ``H_ℓ``, ``d^1.5`` must be mathtext);
* **small text** — a text is set below :data:`MIN_POINTS` points.
"""

from __future__ import annotations

import re
from itertools import combinations

import numpy as np
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

MIN_POINTS = 7.0
TOLERANCE_PT = 1.0  # overlaps this small are antialiasing and glyph padding, not a collision

_MATH = re.compile(r"(?<!\\)\$.*?(?<!\\)\$")
_TEX = re.compile(r"_\{|\^\{|\\[A-Za-z]+|\^\S")  # braces, commands, a superscript
_UNDERSCORE = re.compile(r"(\S*)_(\S*)")
_WORD = re.compile(r"[A-Za-z]{2,}")


Placed = dict  # {Text: where it sits, in words}: the texts a check reads, each with a place for its message


def problems(fig: Figure) -> list[str]:
    """Every legibility problem of ``fig`` (empty when it reads well), each a line naming the texts involved."""
    renderer = drawn(fig)
    items = placed(fig)
    return [*small_texts(items), *raw_tex(items), *overlaps(items, renderer, _px(fig, TOLERANCE_PT)),
            *covered_points(fig, renderer)]


def drawn(fig: Figure) -> RendererBase:
    """Draw ``fig`` on an Agg canvas (the one of the png; a closed figure has lost it) and return its renderer."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def texts(fig: Figure) -> list[Text]:
    """The visible, non-empty texts that a draw of ``fig`` puts on the page (tick labels only of drawn ticks)."""
    return list(placed(fig))


def placed(fig: Figure) -> Placed:
    """:func:`texts` with where each sits ("x tick label of axes 'title'", "legend of …", "table cell")."""
    found: list[tuple[Text, str]] = [(t, "figure text") for t in fig.texts]
    found += [(t, "figure title") for t in (getattr(fig, n, None) for n in ("_suptitle", "_supxlabel", "_supylabel"))
              if t]
    for legend in fig.legends:
        found += [(t, "figure legend") for t in legend_texts(legend)]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i} {ax.get_title()!r}" if ax.get_title() else f"axes {i}"
        found += [(t, f"title of {name}") for t in (ax.title, ax._left_title, ax._right_title)]
        found += [(t, f"annotation in {name}") for t in ax.texts]
        if ax.axison:
            for axis, xy in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                if axis.get_visible():
                    found += [(axis.label, f"{xy} label of {name}"), (axis.get_offset_text(), f"{xy} offset of {name}")]
                    found += [(label, f"{xy} tick label of {name}") for tick in axis._update_ticks()
                              for label in (tick.label1, tick.label2)]
        if ax.get_legend() is not None:
            found += [(t, f"legend of {name}") for t in legend_texts(ax.get_legend())]
        for table in ax.tables:
            found += [(cell.get_text(), f"table cell {key} of {name}") for key, cell in table.get_celld().items()
                      if cell.get_visible()]
    items: Placed = {}
    for t, where in found:
        if t.get_visible() and t.get_text().strip():
            items.setdefault(t, where)
    return items


def legend_texts(legend: Legend) -> list[Text]:
    return [*legend.get_texts(), legend.get_title()] if legend.get_visible() else []


def small_texts(items: Placed, minimum: float = MIN_POINTS) -> list[str]:
    return [f"text below {minimum:g} pt ({t.get_fontsize():.1f} pt): {_name(t, items)}" for t in items
            if t.get_fontsize() < minimum - 1e-9]


def outside_math(text: str) -> str:
    """``text`` without its ``$…$`` mathtext spans."""
    return _MATH.sub(" ", text)


def plain_formula(text: str) -> str | None:
    """The first piece of ``text`` outside ``$…$`` that is a formula written as plain text, or None."""
    rest = outside_math(text)
    if m := _TEX.search(rest):
        return m.group()
    for m in _UNDERSCORE.finditer(rest):
        left, right = re.split(r"\W", m[1])[-1], re.split(r"\W", m[2])[0]
        if not (_WORD.fullmatch(left) and _WORD.fullmatch(right)):  # not an identifier such as fan_in
            return m.group()
    return None


def raw_tex(items: Placed) -> list[str]:
    return [f"formula outside $…$ ({snippet!r} shows literally): {_name(t, items)}" for t in items
            if (snippet := plain_formula(t.get_text()))]


def overlaps(items: Placed, renderer: RendererBase, tolerance_px: float) -> list[str]:
    boxes = [(t, t.get_window_extent(renderer)) for t in items]
    found = []
    for (a, box_a), (b, box_b) in combinations(boxes, 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > tolerance_px and height > tolerance_px:
            found.append(f"texts overlap: {_name(a, items)} and {_name(b, items)}")
    return found


def legends(fig: Figure) -> list[Legend]:
    axes_legends = [ax.get_legend() for ax in fig.axes if ax.get_visible() and ax.get_legend() is not None]
    return [leg for leg in [*fig.legends, *axes_legends] if leg.get_visible()]


def covered_points(fig: Figure, renderer: RendererBase) -> list[str]:
    """Lines with drawn vertices inside a legend's box: lines of every axes, so a figure legend, a legend placed
    outside its axes over a neighbour, or one under a twin axes' curve is checked too."""
    found = []
    for legend in legends(fig):
        entries = ", ".join(repr(t.get_text()) for t in legend.get_texts()[:3])
        for (ax, line), inside in covered_by(legend, fig, renderer).items():
            found.append(f"legend [{entries}] covers {inside} point(s) of line {line.get_label()!r} in axes "
                         f"{fig.axes.index(ax)} {ax.get_title()!r}")
    return found


def covered_by(legend: Legend, fig: Figure, renderer: RendererBase) -> dict:
    """``{(axes, line): number of its drawn vertices inside the legend's box}`` for the lines it covers."""
    tolerance = _px(fig, TOLERANCE_PT)
    box = legend.get_window_extent(renderer)
    inner = Bbox.from_extents(box.x0 + tolerance, box.y0 + tolerance, box.x1 - tolerance, box.y1 - tolerance)
    found = {}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        frame = ax.get_window_extent(renderer)
        for line in ax.get_lines():
            if line.get_visible():
                xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
                if inside := _inside(drawn_points(xy, frame), inner):
                    found[ax, line] = inside
    return found


def drawn_points(points: np.ndarray, frame: Bbox) -> np.ndarray:
    """The finite display points within the axes' frame (the others are clipped, not drawn)."""
    points = points[np.isfinite(points).all(axis=1)]
    keep = ((points[:, 0] >= frame.x0) & (points[:, 0] <= frame.x1)
            & (points[:, 1] >= frame.y0) & (points[:, 1] <= frame.y1))
    return points[keep]


def _inside(points: np.ndarray, box: Bbox) -> int:
    if box.width <= 0 or box.height <= 0:
        return 0
    return int(((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)).sum())


def _px(fig: Figure, points: float) -> float:
    return points * fig.dpi / 72.0


def _name(t: Text, items: Placed) -> str:
    """The text itself and where it sits, for a message a person can find."""
    return f"{t.get_text()!r} ({items[t]})"

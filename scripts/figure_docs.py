"""Write the docs generated from the figure registry: the cost table of docs/cluster.md (each figure's
``Costs``, and its run count from the paper-scale grids) and the README's figure table (every registered
figure, then the papers' figures not built yet from bnexp/figures/not_yet.yaml). ``make docs`` runs it.

    python scripts/figure_docs.py           # rewrite both
    python scripts/figure_docs.py --check   # exit 1 if either is not what the registry gives (tests/test_make.py)

The make targets need nothing generated: the Makefile's pattern rules ``<paper>-%`` reproduce any figure by id,
and ``make help`` lists them with their costs through ``bnexp figures --targets``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- costs:begin", "<!-- costs:end -->"
FIG_BEGIN, FIG_END = "<!-- figures:begin", "<!-- figures:end -->"


def cost_table() -> str:
    """The markdown table of every figure's paper-scale cost (docs/cluster.md)."""
    from bnexp import figures

    lines = ["| figure | kind | runs | paper scale | data | basis |", "|---|---|---|---|---|---|"]
    for fig in figures.all_figures():
        costs = fig.costs
        lines.append(f"| {fig.id} | {fig.kind} | {fig.run_count('paper')} | {fig.cost('paper')} | "
                     f"{costs.data if costs else '?'} | {costs.basis if costs else ''} |")
    return "\n".join(lines) + "\n"


def figure_table() -> str:
    """The README's table of every registered figure, and the list of the papers' figures not built yet."""
    from bnexp import figures

    lines = ["| figure | what | kind | command |", "|---|---|---|---|"]
    for fig in figures.all_figures():
        what = fig.title.replace("|", "\\|") + (f" (the runs of {fig.alias_of})" if fig.alias_of else "")
        command = fig.id[len("rank/"):] if fig.paper == "rank" else fig.id
        lines.append(f"| {fig.id} | {what} | {fig.kind} | `bnexp reproduce {command}` |")
    pending = figures.not_yet()
    if pending:
        lines += ["", f"Not reproduced yet ({len(pending)}; `bnexp/figures/not_yet.yaml`):", ""]
        lines += [f"- {fig_id}: {what}" for fig_id, what in pending.items()]
    else:
        ours = sum(fig.paper != "beyond" for fig in figures.all_figures())
        lines += ["", f"All {ours} figures and tables of the five papers (docs/figures.md) are registered "
                  "(`bnexp/figures/not_yet.yaml` lists any that are not); the `beyond/` figures ask the papers' "
                  "questions of what the papers do not cover (see \"Beyond the papers\")."]
    return "\n".join(lines) + "\n"


def between(doc: str, begin: str, end: str, body: str) -> str:
    """``doc`` with the text between the line starting ``begin`` and ``end`` replaced by ``body``."""
    start, stop = doc.index(begin), doc.index(end)
    begin_line = doc[start:].split("\n", 1)[0] + "\n"
    return doc[:start] + begin_line + body + doc[stop:]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    docs = {CLUSTER_DOC: (BEGIN, END, cost_table()), README: (FIG_BEGIN, FIG_END, figure_table())}
    fresh = {path: between(path.read_text(), begin, end, body) for path, (begin, end, body) in docs.items()}
    if "--check" in argv:
        stale = [path for path, text in fresh.items() if text != path.read_text()]
        for path in stale:
            print(f"{path} is out of date with the figure registry: run `make docs` (python scripts/figure_docs.py)",
                  file=sys.stderr)
        return 1 if stale else 0
    for path, text in fresh.items():
        path.write_text(text)
    print(f"wrote the cost table of {CLUSTER_DOC} and the figure table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

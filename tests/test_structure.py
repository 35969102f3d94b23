"""The shape of the code base, checked: no import cycles between bnexp's modules, no module over 400 lines
without the reason in its docstring, figure files of one family each (at most 250 lines), and no colour
chosen outside the one style module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bnexp"
MODULES = sorted(PACKAGE.rglob("*.py"))
LONG = 400  # lines; a longer module says why in its docstring ("Long module: ...")
FIGURE_FILE = 250


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """bnexp modules imported at module level (imports inside functions are deferred and cannot cycle at
    import time; ``if TYPE_CHECKING`` blocks are skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("bnexp")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("bnexp"):
                names.add(base)
                names |= {f"{base}.{a.name}" for a in node.names}
    known = {module_name(p) for p in MODULES}
    return {n for n in names if n in known and n != here}


def test_no_import_cycles():
    graph = {module_name(p): top_level_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    assert any(graph.values()), "no imports found: the parser is broken"
    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            pytest.fail("import cycle: " + " → ".join(cycle))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_modules_are_small_or_say_why(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert lines <= LONG or "Long module:" in doc, f"{path.name}: {lines} lines and no 'Long module:' reason"


FIGURE_FILES = [p for p in (PACKAGE / "figures").rglob("*.py")
                if p.parent != PACKAGE / "figures" and p.name != "__init__.py"]


@pytest.mark.parametrize("path", FIGURE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_figure_files_hold_one_family_and_pick_no_colours(path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= FIGURE_FILE, f"{path.name}: split the family (≤ {FIGURE_FILE} lines)"
    assert not re.search(r"""["'](tab:\w+|#[0-9A-Fa-f]{6})["']|\bcolor\s*=\s*["']""", text), (
        f"{path.name} picks a colour: take it from bnexp.figures.style")

"""Errors that carry enough context to fix the input that caused them."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any


class ConfigError(ValueError):
    """A configuration value is impossible or unknown.

    The message always names the offending key and value and, where there is a finite set of valid
    values, lists them in natural order (fig2 before fig10), after the closest one to a mistyped string, e.g.
    ``chain.norm='bn_thoery' is not valid; did you mean bn_theory? choose one of: bn_center, bn_theory, none``.
    """

    def __init__(self, key: str, value: Any, expected: str | Iterable[Any] | None = None):
        self.key, self.value = key, value
        if expected is None:
            msg = f"{key}={value!r} is not valid"
        elif isinstance(expected, str):
            msg = f"{key}={value!r} is not valid: {expected}"
        else:
            items = list(expected)
            numeric = all(isinstance(c, Real) and not isinstance(c, bool) for c in items)
            choices = [str(c) for c in sorted(items)] if numeric else sorted((str(c) for c in items), key=_natural)
            msg = f"{key}={value!r} is not valid; {_closest(value, choices)}choose one of: {', '.join(choices)}"
        super().__init__(msg)


def _natural(text: str) -> list:
    """Sort key reading digit runs as numbers: rank/fig2 < rank/fig10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _closest(value: Any, choices: list[str]) -> str:
    """``did you mean X? `` for the choice closest to a mistyped string value (case ignored), else nothing."""
    if not isinstance(value, str):
        return ""
    lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.75)
    return f"did you mean {lower[close[0]]}? " if close else ""


def choose(key: str, value: Any, registry: Iterable[Any]) -> Any:
    """Return ``value`` if it is in ``registry`` (a mapping or iterable), else raise :class:`ConfigError`."""
    if value not in registry:
        raise ConfigError(key, value, registry)
    return value


def check_bool(key: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (YAML true/false), else raise :class:`ConfigError`."""
    if not isinstance(value, bool):
        raise ConfigError(key, value, (True, False))
    return value


def check_int(key: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) ≥ ``minimum``, else :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(key, value, f"must be an integer ≥ {minimum}")
    return int(value)


def check_number(key: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *, inf_ok: bool = False,
                 open_lo: bool = False, open_hi: bool = False) -> float:
    """``value`` as a float if it is a real number (not a bool, not nan) in [lo, hi] (an end excluded with
    ``open_lo`` / ``open_hi``), finite unless ``inf_ok``; else :class:`ConfigError` naming the interval."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (lo < value if open_lo else lo <= value) and (value < hi if open_hi else value <= hi)
    ok = ok and (inf_ok or not math.isinf(value))
    if not ok:
        if math.isinf(hi):
            rule = f"must be a number {'>' if open_lo else '≥'} {lo:g}" + ("" if inf_ok else " (finite)")
        else:
            rule = f"must be a number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
        raise ConfigError(key, value, rule)
    return float(value)


class CorruptRun(RuntimeError):
    """A run directory's files cannot be trusted (a truncated or damaged ``metrics.csv``, an unreadable
    ``run.json``), or a figure's saved output cannot be read. The message names the file, what is wrong
    with it, and how to get a sound one back (``remedy``; by default: delete the run and rerun it)."""

    def __init__(self, path: Any, problem: str, remedy: str | None = None):
        from pathlib import Path

        self.path, self.problem = Path(path), problem
        if remedy is None:
            remedy = (f"Delete the run and make it again: `rm -r {self.path.parent}`, then rerun the "
                      "`bnexp reproduce`/`bnexp sweep` that made it (it recomputes only the missing run)")
        super().__init__(f"{self.path}: {problem}. {remedy}")

"""Reading runs back: ``metrics.csv`` checked row by row, configs flattened, :func:`load` and run metadata.

The reading half of the results contract (:mod:`bnexp.results`). A finished run's file must be whole: a row cut
short, a wrong field count or a value that is not a number raises :class:`~bnexp.errors.CorruptRun` naming the
file and the run to redo, so a damaged run never turns into a silently different figure.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from bnexp.errors import CorruptRun
from bnexp.results.runs import COLUMNS, outputs_root, read_status


def flatten(container: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"chain": {"width": 8}}`` → ``{"chain.width": 8}``; lists become tuples (hashable columns)."""
    flat: dict[str, Any] = {}
    for k, v in container.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(flatten(v, name + "."))
        else:
            flat[name] = tuple(v) if isinstance(v, list) else v
    return flat


def run_config(directory: Path) -> dict[str, Any]:
    """The flattened resolved config of a run directory."""
    path = Path(directory) / "config.yaml"
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise CorruptRun(path, "is missing") from None
    except Exception as err:  # YAML errors of every kind: the file is damaged
        raise CorruptRun(path, f"is unreadable ({' '.join(str(err).split())[:200]})") from None
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def read_metrics(directory: Path, *, partial_ok: bool = False) -> pd.DataFrame:
    """``metrics.csv`` of one run as a DataFrame with the schema columns, checked row by row.

    A file that does not end with a newline was cut in the middle of a row; a row with the wrong number of
    fields, an empty seed/step/metric or a value that is not a number is damage. Either raises
    :class:`~bnexp.errors.CorruptRun` naming the file. ``partial_ok`` (for a run still being written) drops
    an unfinished last row instead.
    """
    path = Path(directory) / "metrics.csv"
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CorruptRun(path, f"cannot be read ({err.strerror or err})") from None
    if data and not data.endswith(b"\n"):
        if not partial_ok:
            last = data.rsplit(b"\n", 1)[-1].decode(errors="replace")
            raise CorruptRun(path, f"ends in the middle of a row ({last!r}): the file is truncated")
        data = data[: data.rfind(b"\n") + 1]
    header = data.split(b"\n", 1)[0].decode(errors="replace").strip()
    if header != ",".join(COLUMNS):
        raise CorruptRun(path, f"has the header {header!r}, expected {','.join(COLUMNS)!r}")
    try:
        with warnings.catch_warnings():  # a row with extra fields is only a ParserWarning to pandas
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(data), dtype={"seed": "int64", "step": "int64", "metric": str, "value": str},
                             keep_default_na=False, na_values={"layer": [""]}, index_col=False,
                             on_bad_lines="error")
        value = df["value"]
        if (value == "").any() or (df["metric"] == "").any():
            raise ValueError("empty field")
        df["value"] = pd.to_numeric(value.mask(value.str.lower().isin(("nan", "-nan"))), errors="raise")
        df["layer"] = pd.to_numeric(df["layer"])
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning):
        # the fast reader says no: find the first bad row for the message
        raise CorruptRun(path, _first_bad_row(data)) from None
    return df


def _first_bad_row(data: bytes) -> str:
    """Where and how ``metrics.csv`` (as bytes) breaks the schema, for the error message (slow; errors only)."""
    lines = data.decode(errors="replace").splitlines()
    for number, fields in enumerate(csv.reader(lines[1:]), start=2):
        problem = None
        if len(fields) != len(COLUMNS):
            problem = f"has {len(fields)} fields, expected {len(COLUMNS)}"
        else:
            seed, step, layer, metric, value = fields
            try:
                int(seed), int(step), (layer == "" or int(float(layer)))
                if not metric:
                    problem = "has no metric name"
                float(value)
            except ValueError:
                problem = "has a field that is not a number where the schema needs one"
        if problem:
            return f"row {number} ({','.join(fields)!r}) {problem}: the file is damaged"
    return "does not parse as the metrics schema"


def load_runs(directories: Sequence[Path]) -> pd.DataFrame:
    """Long rows of the given run directories joined with their flattened configs, their ``run.json`` facts
    and a ``run`` column.

    The config's base ``seed`` becomes the column ``base_seed``: ``seed`` is the replicate's own seed. The
    scalar fields of ``run.json`` become columns ``run.<field>`` (``run.step_unit``: epoch or iteration,
    ``run.precision``, ``run.device``, ...), so a figure reads what the run recorded about itself.
    """
    frames = []
    for directory in directories:
        info = read_status(directory, strict=True)
        df = read_metrics(directory, partial_ok=info.get("status") != "done")
        for name, value in run_config(directory).items():
            name = f"base_{name}" if name in COLUMNS else name
            df[name] = [value] * len(df) if isinstance(value, tuple) else value
        for name, value in info.items():
            if isinstance(value, (str, int, float, bool)) or value is None:
                df[f"run.{name}"] = value
        df["run"] = Path(directory).name
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "run"])
    return pd.concat(frames, ignore_index=True)


def load(exp: str, filters: Mapping[str, Any] | None = None, *, root: Path | None = None,
         include_unfinished: bool = False, **kw: Any) -> pd.DataFrame:
    """All finished runs of experiment ``exp`` as one tidy DataFrame.

    Filters select on flattened config columns, given as a mapping (``{"chain.width": 32}``) or as keyword
    arguments with ``__`` for dots (``chain__width=32``). A filter value that is a list/tuple/set matches
    any of its elements.
    """
    root = outputs_root() if root is None else Path(root)
    wanted = dict(filters or {})
    wanted.update({k.replace("__", "."): v for k, v in kw.items()})
    directories = []
    for directory in sorted((root / "runs" / exp).glob("*/")):
        info = read_status(directory)
        if not info or (info.get("status") != "done" and not include_unfinished):
            continue
        if info.get("status") != "done" and not (directory / "metrics.csv").exists():
            continue  # an unfinished run that has written nothing yet
        config = run_config(directory)
        if all(_matches(config.get(k), v) for k, v in wanted.items()):
            directories.append(directory)
    return load_runs(directories)


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return any(_matches(actual, w) for w in wanted)
    if isinstance(actual, float) and isinstance(wanted, (int, float)):
        return actual == float(wanted)
    return actual == wanted


def run_metadata(directories: Sequence[Path]) -> dict[str, Any]:
    """Where and how runs were made, from their ``run.json``: count, total wall time, devices, torch
    versions, git commits and hosts (each a sorted list of the distinct values), first start and last end."""
    infos = [read_status(d) or {} for d in directories]

    def distinct(get) -> list[str]:
        return sorted({str(v) for v in map(get, infos) if v is not None})

    starts, ends = distinct(lambda i: i.get("start")), distinct(lambda i: i.get("end"))
    return {"n_runs": len(infos), "wall_s": round(sum(float(i.get("wall_s") or 0) for i in infos), 1),
            "devices": distinct(lambda i: i.get("device")),
            "torch": distinct(lambda i: (i.get("versions") or {}).get("torch")),
            "git_commits": distinct(lambda i: i.get("git_commit")), "hosts": distinct(lambda i: i.get("host")),
            "start": starts[0] if starts else None, "end": ends[-1] if ends else None}

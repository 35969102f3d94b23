"""Run directories, tidy CSVs and loading them back (the results contract).

One run = one directory ``<outputs>/runs/<exp_name>/<key>/`` where ``key`` is a short hash of the resolved
config minus output paths, runtime switches and Hydra's own settings. It holds

* ``config.yaml`` — the resolved config,
* ``metrics.csv`` — long format, columns ``seed, step, layer, metric, value``; ``step`` is the epoch for
  training (the iteration with ``optim.log_every``; run.json ``step_unit``), the layer index ℓ for depth
  profiles of a chain, 0 at initialisation; ``layer`` is empty for
  whole-network metrics. Rows are appended as they are produced, so a run that dies leaves a readable prefix.
* ``run.json`` — status (running/done/failed), start/end, wall time, device, versions, git commit, pid, host.
* ``checkpoint.pt`` — only while a training run is unfinished (``bnexp.checkpoint``): rerunning resumes from it.

Figures read runs only through :func:`load` (and :func:`load_runs`), which join the long rows with the
flattened config (``chain.width``, ``model.depth``, ...).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

import bnexp

COLUMNS = ("seed", "step", "layer", "metric", "value")
CHECKPOINT = "checkpoint.pt"  # a training engine's resumable state in a run directory (bnexp.checkpoint)
# Sections of a config that do not change what a run computes: excluded from its key.
KEY_EXCLUDED = ("paths", "runtime", "hydra")
# Keys of the data section that say where inputs are read from, not what they are: excluded from the key too.
DATA_KEY_EXCLUDED = ("root", "download")

Row = tuple[int, int, "int | None", str, float]


def outputs_root(cfg: DictConfig | None = None) -> Path:
    """The outputs directory: ``cfg.paths.outputs`` if given, else ``$BNEXP_OUTPUTS``, else ``./outputs``."""
    if cfg is not None and OmegaConf.select(cfg, "paths.outputs") is not None:
        return Path(cfg.paths.outputs)
    return Path(os.environ.get("BNEXP_OUTPUTS", "outputs"))


def key_config(cfg: DictConfig | Mapping) -> dict:
    """The part of a config that identifies a run: everything but paths, runtime, hydra and where the data is
    read from (``data.root``, ``data.download``).

    Exception: a chain or input-batch run on a named non-CPU device keeps ``runtime.device`` — chains' generators
    draw other numbers there and float32 products round differently, so it is a different run (networks draw
    their weights on the CPU and are not).
    """
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    key = {k: v for k, v in container.items() if k not in KEY_EXCLUDED}
    if isinstance(key.get("data"), dict):
        key["data"] = {k: v for k, v in key["data"].items() if k not in DATA_KEY_EXCLUDED}
    device = str((container.get("runtime") or {}).get("device", "auto"))
    if container.get("engine") in ("simulate", "inputs") and device not in ("auto", "cpu", "None"):
        key["device"] = device
    return key


def run_key(cfg: DictConfig | Mapping) -> str:
    """Short stable hash (10 hex digits) of :func:`key_config`."""
    blob = json.dumps(key_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def run_dir(cfg: DictConfig, root: Path | None = None) -> Path:
    root = outputs_root(cfg) if root is None else Path(root)
    return root / "runs" / str(cfg.exp_name) / run_key(cfg)


def read_status(directory: Path) -> dict | None:
    """The parsed ``run.json`` of a run directory, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(directory) / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_done(directory: Path) -> bool:
    info = read_status(directory)
    return bool(info) and info.get("status") == "done"


def _process_alive(info: Mapping) -> bool:
    """True if the process that wrote ``info`` still runs (same host and a live pid)."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except (OSError, ValueError):
        return False
    return True


def _git_commit() -> str | None:
    repo = Path(bnexp.__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__, "bnexp": bnexp.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fmt(value: Any) -> Any:
    # repr keeps float64 exactly; inf/nan are written as inf/nan, which pandas reads back as floats
    return "" if value is None else (repr(float(value)) if isinstance(value, float) else value)


class MemoryWriter:
    """The writer interface of the engines (``append(rows)``, ``note(**fields)``) kept in memory: ``rows`` and
    ``info``. For running an engine from Python without a run directory (tests, benchmarks)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.info: dict = {}

    def append(self, rows) -> None:
        self.rows.extend(rows)

    def note(self, **fields) -> None:
        self.info.update(fields)


class RunWriter:
    """Writes one run directory: ``config.yaml``, ``run.json`` and an appendable ``metrics.csv``.

    Use as a context manager; leaving the block normally marks the run done, an exception marks it failed
    (and re-raises). Rows already appended stay on disk either way.
    """

    def __init__(self, directory: Path, cfg: DictConfig, *, device: str = "cpu", resume: bool = False):
        self.directory = Path(directory)
        self.cfg = cfg
        self.device = device
        self.resume = resume  # keep metrics.csv as it is: the engine resumes from a checkpoint and truncates it
        self._file = None
        self._csv = None
        self._start = 0.0
        self.header_bytes = 0
        self.info: dict[str, Any] = {}

    def __enter__(self) -> RunWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        # append mode: writes always land at the end, also after truncate(); closed in __exit__
        self._file = open(self.directory / "metrics.csv", "a", newline="")
        self._csv = csv.writer(self._file)
        if not self.resume:
            self._file.truncate(0)
        if self.tell() == 0:
            self._csv.writerow(COLUMNS)
        self._file.flush()
        self.header_bytes = len((",".join(COLUMNS) + "\r\n").encode())
        self._start = time.time()
        self.info = {
            "status": "running", "exp": str(self.cfg.exp_name), "key": self.directory.name,
            "engine": str(self.cfg.get("engine", "")), "start": _now(), "end": None, "wall_s": None,
            "device": self.device, "host": socket.gethostname(), "pid": os.getpid(),
            "command": " ".join(sys.argv), "versions": _versions(), "git_commit": _git_commit(),
        }
        self._write_info()
        return self

    def append(self, rows: Iterable[Row]) -> None:
        """Append rows ``(seed, step, layer, metric, value)`` and flush them to disk."""
        self._csv.writerows([_fmt(x) for x in row] for row in rows)
        self._file.flush()

    def tell(self) -> int:
        """Bytes of ``metrics.csv`` written so far (flushed): where a checkpoint says to truncate on resume."""
        self._file.flush()
        return os.fstat(self._file.fileno()).st_size

    def truncate(self, size: int) -> None:
        """Cut ``metrics.csv`` back to ``size`` bytes (the rows up to a checkpoint; at least the header).
        Raises ValueError if the file is shorter than that (it is not the file the checkpoint saw)."""
        if not self.header_bytes <= size <= self.tell():
            raise ValueError(f"metrics.csv has {self.tell()} bytes; cannot truncate it to {size}")
        self._file.truncate(size)

    def note(self, **fields: Any) -> None:
        """Record extra facts about the run in ``run.json`` (e.g. the learning rate a grid search chose)."""
        self.info.update(fields)
        self._write_info()

    def _write_info(self) -> None:
        tmp = self.directory / "run.json.tmp"
        tmp.write_text(json.dumps(self.info, indent=2, default=str))
        tmp.replace(self.directory / "run.json")

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._file.close()
        self.info.update(end=_now(), wall_s=round(time.time() - self._start, 3))
        if exc_type is None:
            self.info["status"] = "done"
        else:
            self.info["status"] = "failed"
            self.info["error"] = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        self._write_info()
        return False


def execute(cfg: DictConfig, engine: Callable[[DictConfig, RunWriter], None], *, device: str = "cpu",
            force: bool = False) -> tuple[Path, str]:
    """Run ``engine(cfg, writer)`` in the run directory of ``cfg`` unless that run is already done.

    Returns ``(directory, outcome)`` with outcome ``"skipped"`` (done before, or running in a live
    process) or ``"done"``. A run left ``running`` by a dead process, or ``failed``, is rerun from scratch —
    unless its directory holds a training checkpoint (``CHECKPOINT``): then the writer keeps ``metrics.csv``
    (``RunWriter.resume``) and the engine resumes from the checkpoint, truncating the rows written after it.
    ``force`` always starts from scratch.
    """
    directory = run_dir(cfg)
    info = read_status(directory)
    if info and not force:
        if info.get("status") == "done":
            return directory, "skipped"
        if info.get("status") == "running" and _process_alive(info) and info.get("pid") != os.getpid():
            return directory, "skipped"
    resume = bool(info) and not force and (directory / CHECKPOINT).exists() and (directory / "metrics.csv").exists()
    with RunWriter(directory, cfg, device=device, resume=resume) as writer:
        engine(cfg, writer)
    return directory, "done"


# ----------------------------------------------------------------------------------------------- loading

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
    cfg = OmegaConf.load(Path(directory) / "config.yaml")
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def read_metrics(directory: Path) -> pd.DataFrame:
    """``metrics.csv`` of one run as a DataFrame with the schema columns (a partial file reads fine)."""
    df = pd.read_csv(Path(directory) / "metrics.csv", dtype={"metric": str},
                     keep_default_na=False, na_values={"value": ["nan", "NaN"], "layer": [""]})
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def load_runs(directories: Sequence[Path]) -> pd.DataFrame:
    """Long rows of the given run directories joined with their flattened configs and a ``run`` column.

    The config's base ``seed`` becomes the column ``base_seed``: ``seed`` is the replicate's own seed.
    """
    frames = []
    for directory in directories:
        df = read_metrics(directory)
        for name, value in run_config(directory).items():
            name = f"base_{name}" if name in COLUMNS else name
            df[name] = [value] * len(df) if isinstance(value, tuple) else value
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
        if not (directory / "metrics.csv").exists():
            continue
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

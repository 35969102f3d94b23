"""Run directories: keys, ``run.json``, the writer of ``metrics.csv``, the run lock and :func:`execute`.

The writing half of the results contract (:mod:`bnexp.results`): a run's directory is named by the hash of its
config (:func:`run_key`); :class:`RunWriter` writes ``config.yaml``, ``run.json`` and appends ``metrics.csv``;
:func:`execute` computes a run under its :class:`RunLock` unless it is done; :func:`run_state` says what became
of a run from its files alone.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

import bnexp
from bnexp.errors import CorruptRun

COLUMNS = ("seed", "step", "layer", "metric", "value")
CHECKPOINT = "checkpoint.pt"  # a training engine's resumable state in a run directory (bnexp.training.checkpoint)
LOCK = ".lock"  # held (flock) by the process computing a run: two sweeps never compute one run twice
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


def read_status(directory: Path, *, strict: bool = False) -> dict | None:
    """The parsed ``run.json`` of a run directory, or None if there is none or it is unreadable (a run to
    compute again). ``strict`` (when reading results) raises :class:`~bnexp.errors.CorruptRun` instead."""
    path = Path(directory) / "run.json"
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError(f"holds a {type(info).__name__}, not an object")
        return info
    except FileNotFoundError:
        if strict:
            raise CorruptRun(path, "is missing") from None
        return None
    except (OSError, ValueError) as err:
        if strict:
            raise CorruptRun(path, f"is unreadable ({err})") from None
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
    (and re-raises), Ctrl-C (KeyboardInterrupt) leaves it running with ``interrupted`` noted. Rows already
    appended stay on disk either way. ``command``: what run.json records as the command that makes this run
    again (the launcher knows the run's own overrides); by default the process's command line.
    """

    def __init__(self, directory: Path, cfg: DictConfig, *, device: str = "cpu", resume: bool = False,
                 command: str | None = None):
        self.directory = Path(directory)
        self.cfg = cfg
        self.command = command
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
            "command": self.command or " ".join(shlex.quote(a) for a in ["bnexp", *sys.argv[1:]]),
            "versions": _versions(), "git_commit": _git_commit(),
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
        elif issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C: not a failure; the run stays "running" with a dead
            self.info["interrupted"] = self.info["end"]  # process, i.e. interrupted, and the same command redoes it
        else:
            self.info["status"] = "failed"
            self.info["error"] = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        self._write_info()
        return False


def run_command(engine: str, overrides: Iterable[str]) -> str:
    """``bnexp <engine> <overrides>``, each override quoted for a shell: the command that makes one run again."""
    return " ".join(["bnexp", engine, *(shlex.quote(o) for o in overrides)])


class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.lock``, held while a process computes that run.

    The kernel releases it when the holder exits, however it exits (``kill -9`` included), so a lock is never
    stale: a second sweep into the same outputs directory waits for the run instead of computing it again,
    then finds it done. (On a shared file system without working ``flock`` the ``run.json`` pid/host check in
    :func:`execute` still keeps a live run on the same host from being started twice.)
    """

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self, *, blocking: bool) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def execute(cfg: DictConfig, engine: Callable[[DictConfig, RunWriter], None], *, device: str = "cpu",
            force: bool = False, on_wait: Callable[[Path, dict | None], None] | None = None,
            command: str | None = None) -> tuple[Path, str]:
    """Run ``engine(cfg, writer)`` in the run directory of ``cfg`` unless that run is already done.

    Returns ``(directory, outcome)`` with outcome ``"skipped"`` (done before, by us or by a process we waited
    for) or ``"done"``; an engine error marks the run failed and is re-raised. The run's :class:`RunLock` is
    held while it computes: if another process holds it, ``on_wait(directory, run.json)`` is called and this
    one waits, then skips the run if the other finished it. A run left ``running`` by a dead process, or
    ``failed``, is rerun from scratch — unless its directory holds a training checkpoint (``CHECKPOINT``):
    then the writer keeps ``metrics.csv`` (``RunWriter.resume``) and the engine resumes from the checkpoint,
    truncating the rows written after it. ``force`` always starts from scratch.
    """
    directory = run_dir(cfg)
    if not force and is_done(directory):
        return directory, "skipped"
    lock = RunLock(directory)
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait(directory, read_status(directory))
        lock.acquire(blocking=True)
    try:
        info = read_status(directory)
        if info and not force:
            if info.get("status") == "done":
                return directory, "skipped"
            if (info.get("status") == "running" and _process_alive(info) and info.get("pid") != os.getpid()
                    and "interrupted" not in info):  # (Ctrl-C'd in a process that lives on: redo it)
                return directory, "skipped"  # a live run on this host whose lock we could not see (no flock)
        resume = (bool(info) and not force and (directory / CHECKPOINT).exists()
                  and (directory / "metrics.csv").exists())
        with RunWriter(directory, cfg, device=device, resume=resume, command=command) as writer:
            engine(cfg, writer)
    finally:
        lock.release()
    return directory, "done"


def run_state(directory: Path) -> str:
    """``done``, ``failed``, ``running`` (a live process holds the run), ``interrupted`` (left running by a
    process that is gone, or stopped by Ctrl-C) or ``missing`` (no ``run.json``)."""
    info = read_status(directory)
    if not info:
        return "missing"
    status = info.get("status")
    if status == "running":
        lock = RunLock(directory)
        if lock.acquire(blocking=False):
            lock.release()
            return "running" if _process_alive(info) and "interrupted" not in info else "interrupted"
        return "running"
    return status if status in ("done", "failed") else "missing"

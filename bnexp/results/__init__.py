"""Run directories, tidy CSVs and loading them back (the results contract).

One run = one directory ``<outputs>/runs/<exp_name>/<key>/`` where ``key`` is a short hash of the resolved
config minus output paths, runtime switches and Hydra's own settings. It holds

* ``config.yaml`` — the resolved config,
* ``metrics.csv`` — long format, columns ``seed, step, layer, metric, value``; ``step`` is the epoch for
  training (the iteration with ``optim.log_every``; run.json ``step_unit``), the layer index ℓ for depth
  profiles of a chain, 0 at initialisation; ``layer`` is empty for
  whole-network metrics. Rows are appended as they are produced, so a run that dies leaves a readable prefix.
* ``run.json`` — status (running/done/failed), start/end, wall time, device, versions, git commit, pid, host.
* ``checkpoint.pt`` — only while a training run is unfinished (``bnexp.training.checkpoint``): rerunning
  resumes from it.

Figures read runs only through :func:`load` (and :func:`load_runs`), which join the long rows with the
flattened config (``chain.width``, ``model.depth``, ...).

Two modules: :mod:`bnexp.results.runs` writes runs (keys, ``run.json``, :class:`RunWriter`, :class:`RunLock`,
:func:`execute`, :func:`run_state`); :mod:`bnexp.results.load` reads them back (:func:`read_metrics`,
:func:`load`, :func:`load_runs`, :func:`run_metadata`). Everything is imported from ``bnexp.results``.
"""

from bnexp.results.load import flatten, load, load_runs, read_metrics, run_config, run_metadata
from bnexp.results.runs import (
    CHECKPOINT,
    COLUMNS,
    DATA_KEY_EXCLUDED,
    KEY_EXCLUDED,
    LOCK,
    MemoryWriter,
    Row,
    RunLock,
    RunWriter,
    execute,
    is_done,
    key_config,
    outputs_root,
    read_status,
    run_command,
    run_dir,
    run_key,
    run_state,
)
from bnexp.results.spectra import load_spectra

__all__ = ["CHECKPOINT", "COLUMNS", "DATA_KEY_EXCLUDED", "KEY_EXCLUDED", "LOCK", "MemoryWriter", "Row", "RunLock",
           "RunWriter", "execute", "flatten", "is_done", "key_config", "load", "load_runs", "load_spectra",
           "outputs_root", "read_metrics", "read_status", "run_command", "run_config", "run_dir", "run_key",
           "run_metadata", "run_state"]

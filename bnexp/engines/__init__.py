"""The engines of bnexp and the one place where a config's engine is chosen.

An engine turns a composed config into rows ``(seed, step, layer, metric, value)``: ``run(cfg, writer)``
after ``validate(cfg)``. Each one has a primary config of its name in ``configs/`` (``train.yaml``,
``simulate.yaml``, ``inputs.yaml``) that sets ``engine: <name>``:

=========  ==================================  ========================================================
engine     module (imported when first used)   what it runs
=========  ==================================  ========================================================
train      :mod:`bnexp.engines.train`          networks at initialisation and under SGD (``bnexp train``)
simulate   :mod:`bnexp.chains`                 streamed random-matrix chains (``bnexp simulate``)
inputs     :mod:`bnexp.engines.inputs`         statistics of input batches, no network (``bnexp inputs``)
=========  ==================================  ========================================================

Which engine a run uses (:func:`for_args`): the ``engine:`` of its experiment, read from the experiment file
*and the experiments it includes* through its ``defaults`` list (as Hydra composes them: a file's own value
wins over an included one; :func:`for_experiment`), else an ``engine=NAME`` override, else the command's.
Adding an engine: its module (``validate(cfg)``, ``run(cfg, writer)``), its primary config, one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from bnexp import config
from bnexp.errors import ConfigError, check_int

__all__ = ["ENGINES", "Engine", "for_args", "for_experiment", "get", "validate"]


@dataclass(frozen=True)
class Engine:
    """One engine: its name (also its primary config's), and where its ``run`` and ``validate`` live."""

    name: str
    module: str  # holds run(cfg, writer) and, unless ``checker`` is set, validate(cfg)
    checker: str | None = None  # "module:function" validating its configs, when not the module's validate
    prefers_cuda: bool = False  # runtime.device=auto picks CUDA when available (networks); else the CPU

    @property
    def config_name(self) -> str:
        """The primary config (``configs/<name>.yaml``) its runs are composed from."""
        return self.name

    def validate(self, cfg: DictConfig) -> None:
        """Raise :class:`ConfigError` naming the key of the first impossible value of ``cfg``, before any work."""
        check_int("seed", cfg.get("seed"), 0)
        check_int("n_seeds", cfg.get("n_seeds"), 1)
        module, _, function = (self.checker or f"{self.module}:validate").partition(":")
        getattr(importlib.import_module(module), function)(cfg)

    def run(self, cfg: DictConfig, writer) -> None:
        """Compute ``cfg``'s rows into ``writer`` (the engine validates again)."""
        importlib.import_module(self.module).run(cfg, writer)


def _validate_chains(cfg: DictConfig) -> None:
    """The ``simulate`` engine's checks: the ``chain`` section and the runtime."""
    from bnexp import runtime
    from bnexp.chains import ChainParams

    ChainParams.from_cfg(cfg.chain).validate()
    runtime.validate(cfg, prefer_cuda=False)


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("train", "bnexp.engines.train", prefers_cuda=True),
    Engine("simulate", "bnexp.chains", checker="bnexp.engines:_validate_chains"),
    Engine("inputs", "bnexp.engines.inputs"),
)}


def get(name: Any, key: str = "engine") -> Engine:
    """The engine called ``name``; a :class:`ConfigError` on ``key`` naming the valid ones otherwise."""
    if not isinstance(name, str) or name not in ENGINES:
        raise ConfigError(key, name, tuple(ENGINES))
    return ENGINES[name]


def _declared(exp: str) -> Engine | None:
    """The last ``engine:`` along experiment ``exp``'s chain of files (``config.experiment_chain``), if any."""
    for path, data in reversed(config.experiment_chain(exp)):
        if "engine" in data:
            return get(data.engine, f"engine (in exp/{path.name})")
    return None


def for_experiment(exp: str, default: str = "train") -> Engine:
    """The engine experiment ``exp`` is written for: the ``engine:`` of its file or, when the file sets none, of
    the experiment files it includes (the one Hydra's composition keeps); ``default`` when none sets one."""
    return _declared(exp) or get(default)


def for_args(args: Sequence[str], default: str = "train") -> Engine:
    """The engine of a command line: its experiment's (``+exp=NAME``), else an ``engine=NAME`` override, else
    ``default`` (the command's)."""
    exp = config.exp_from_overrides(args)
    engine = _declared(exp) if exp is not None else None
    if engine is not None:
        return engine
    for item in args:
        if item.startswith("engine="):
            return get(item.partition("=")[2])
    return get(default)


def validate(cfg: DictConfig) -> Engine:
    """Validate a composed config with its engine (``cfg.engine``); returns the engine."""
    engine = get(cfg.get("engine"))
    engine.validate(cfg)
    return engine

"""Composing the Hydra configs from Python and validating them before any work starts.

The config tree lives in ``configs/`` at the top of the repository (``$BNEXP_CONFIG_DIR`` overrides it).
Three primary configs exist, one per engine: ``train.yaml`` (networks, ``bnexp train``), ``simulate.yaml``
(random-matrix chains, ``bnexp simulate``) and ``inputs.yaml`` (input batches only, ``bnexp inputs``). An
experiment config ``configs/exp/<name>.yaml`` is a short delta on one of them; its ``engine:`` key says which,
and its ``hydra.sweeper.params`` declare its grid.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bnexp.errors import ConfigError, check_int

ENGINES = ("train", "simulate", "inputs")


def config_dir() -> Path:
    """The directory holding ``train.yaml``, ``simulate.yaml`` and the config groups."""
    env = os.environ.get("BNEXP_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "train.yaml").exists():
        raise FileNotFoundError(
            f"bnexp configs not found in {path}; install bnexp from its repository with `pip install -e .` "
            "or point BNEXP_CONFIG_DIR at the configs/ directory")
    return path


def choose_engine(name: str) -> str:
    if name not in ENGINES:
        raise ConfigError("engine", name, ENGINES)
    return name


def experiments() -> list[str]:
    """Names of the experiment configs (``configs/exp/*.yaml``)."""
    return sorted(p.stem for p in (config_dir() / "exp").glob("*.yaml") if not p.stem.startswith("_"))


def experiment_file(exp: str) -> Path:
    path = config_dir() / "exp" / f"{exp}.yaml"
    if not path.exists():
        raise ConfigError("exp", exp, experiments())
    return path


def experiment_engine(exp: str) -> str:
    """The engine (``train``, ``simulate`` or ``inputs``) an experiment config is written for."""
    engine = OmegaConf.load(experiment_file(exp)).get("engine", "train")
    if engine not in ENGINES:
        raise ConfigError(f"engine (in exp/{exp}.yaml)", engine, ENGINES)
    return engine


def experiment_grid(exp: str) -> dict[str, list[str]]:
    """The sweep an experiment declares (``hydra.sweeper.params``), as override strings per key.

    Includes the sweeps of the experiments it builds on (plain names in its ``defaults`` list), because Hydra
    merges their ``hydra.sweeper.params`` too: a parent's key stays swept unless the child sets it.
    """
    data = OmegaConf.load(experiment_file(exp))
    grid: dict[str, list[str]] = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and (config_dir() / "exp" / f"{entry}.yaml").exists():
            grid.update(experiment_grid(entry))
    params = OmegaConf.select(data, "hydra.sweeper.params") or {}
    grid.update({k: [v.strip() for v in str(val).split(",")] for k, val in params.items()})
    return grid


def exp_from_overrides(overrides: Sequence[str]) -> str | None:
    """The experiment named by a ``+exp=<name>`` (or ``exp=<name>``) override, if any."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") == "exp" and value:
            return value
    return None


def compose(engine: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a config exactly as ``bnexp <engine> <overrides>`` would (no sweep expansion)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if engine not in ENGINES:
        raise ConfigError("engine", engine, ENGINES)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=engine, overrides=list(overrides))
    return cfg


def override_value(value: Any) -> str:
    """A Python value as a Hydra override value (``inf`` for infinity, lists in brackets)."""
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[list[str]]:
    """Cartesian product of a grid ``{key: values}`` as lists of ``key=value`` overrides."""
    keys = list(grid)
    combos = itertools.product(*(grid[k] for k in keys)) if keys else [()]
    return [[f"{k}={override_value(v) if not isinstance(v, str) else v}" for k, v in zip(keys, combo)]
            for combo in combos]


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key of the first impossible value, before any work."""
    engine = cfg.get("engine")
    if engine not in ENGINES:
        raise ConfigError("engine", engine, ENGINES)
    check_int("seed", cfg.get("seed"), 0)
    check_int("n_seeds", cfg.get("n_seeds"), 1)
    if engine == "simulate":
        from bnexp import runtime
        from bnexp.chains import ChainParams

        ChainParams.from_cfg(cfg.chain).validate()
        runtime.validate(cfg, engine)
    elif engine == "inputs":
        from bnexp.inputs import validate as validate_inputs

        validate_inputs(cfg)
    else:
        from bnexp.train import validate as validate_train

        validate_train(cfg)

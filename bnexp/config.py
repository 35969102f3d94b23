"""Composing the Hydra configs from Python and validating them before any work starts.

The config tree lives in ``configs/`` at the top of the repository (``$BNEXP_CONFIG_DIR`` overrides it).
Three primary configs exist, one per engine (:mod:`bnexp.engines`): ``train.yaml`` (networks, ``bnexp
train``), ``simulate.yaml`` (random-matrix chains, ``bnexp simulate``) and ``inputs.yaml`` (input batches only,
``bnexp inputs``). An experiment config ``configs/exp/<name>.yaml`` is a short delta on one of them, possibly
including other experiment files by name in its ``defaults`` list (:func:`experiment_chain`); the ``engine:``
key along that chain says which primary config, and the ``hydra.sweeper.params`` along it declare its grid.
Validating a composed config is its engine's job (``engines.validate``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bnexp.errors import ConfigError


def config_dir() -> Path:
    """The directory holding ``train.yaml``, ``simulate.yaml`` and the config groups."""
    env = os.environ.get("BNEXP_CONFIG_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (path / "train.yaml").exists():
        raise FileNotFoundError(
            f"bnexp configs not found in {path}; install bnexp from its repository with `pip install -e .` "
            "or point BNEXP_CONFIG_DIR at the configs/ directory")
    return path


def experiments() -> list[str]:
    """Names of the experiment configs (``configs/exp/*.yaml``)."""
    return sorted(p.stem for p in (config_dir() / "exp").glob("*.yaml") if not p.stem.startswith("_"))


def experiment_file(exp: str) -> Path:
    path = config_dir() / "exp" / f"{exp}.yaml"
    if not path.exists():
        raise ConfigError("exp", exp, experiments())
    return path


def experiment_chain(exp: str) -> list[tuple[Path, DictConfig]]:
    """Experiment ``exp``'s file and the experiment files it includes (plain names in its ``defaults`` list,
    recursively), each as (path, contents), in Hydra's merge order: an included file comes before the file
    that includes it, so a later entry's value wins (``_self_`` last, Hydra's default)."""
    path = experiment_file(exp)
    data = OmegaConf.load(path)
    chain: list[tuple[Path, DictConfig]] = []
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and (config_dir() / "exp" / f"{entry}.yaml").exists():
            chain += experiment_chain(entry)
    return [*chain, (path, data)]


def experiment_grid(exp: str) -> dict[str, list[str]]:
    """The sweep an experiment declares (``hydra.sweeper.params``), as override strings per key.

    Includes the sweeps of the experiments it builds on (:func:`experiment_chain`), because Hydra merges their
    ``hydra.sweeper.params`` too: a parent's key stays swept unless the child sets it.
    """
    grid: dict[str, list[str]] = {}
    for _, data in experiment_chain(exp):
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


def compose(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose primary config ``name`` (an engine's: ``engines.Engine.config_name``) exactly as ``bnexp <name>
    <overrides>`` would (no sweep expansion)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    primary = sorted(p.stem for p in config_dir().glob("*.yaml") if p.stem != "common")
    if name not in primary:
        raise ConfigError("engine", name, primary)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=name, overrides=list(overrides))
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

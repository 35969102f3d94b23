"""The engine registry: one place chooses a config's engine, an included experiment inherits its engine, and an
unknown engine is a ConfigError naming the valid ones."""

from __future__ import annotations

import shutil

import pytest

from bnexp import cli, config, engines
from bnexp.errors import ConfigError

TINY = ["chain.width=8", "chain.depth=10", "chain.measure_every=5", "runtime.progress=false", "n_seeds=1"]


@pytest.fixture
def config_tree(tmp_path, monkeypatch):
    """A copy of configs/ with a simulate base experiment and a child that includes it without an ``engine:``."""
    root = tmp_path / "configs"
    shutil.copytree(config.config_dir(), root)
    (root / "exp" / "sim_base.yaml").write_text(
        "# @package _global_\nengine: simulate\nexp_name: sim_base\nchain:\n  width: 8\n"
        "hydra:\n  sweeper:\n    params:\n      chain.norm: bn_center,none\n")
    (root / "exp" / "sim_child.yaml").write_text(
        "# @package _global_\ndefaults:\n  - sim_base\nexp_name: sim_child\nchain:\n  depth: 10\n")
    monkeypatch.setenv("BNEXP_CONFIG_DIR", str(root))
    return root


def test_an_included_experiment_gives_its_engine(config_tree):
    assert engines.for_experiment("sim_base").name == "simulate"
    assert engines.for_experiment("sim_child").name == "simulate"  # not the fallback, train
    assert engines.for_args(["+exp=sim_child", "chain.width=4"], "sweep").name == "simulate"
    cfg = config.compose(engines.for_experiment("sim_child").config_name, ["+exp=sim_child"])
    assert cfg.engine == "simulate" and cfg.chain.depth == 10 and cfg.chain.width == 8
    assert engines.validate(cfg) is engines.ENGINES["simulate"]
    assert config.experiment_grid("sim_child") == {"chain.norm": ["bn_center", "none"]}


def test_a_childs_own_engine_wins(config_tree):
    (config_tree / "exp" / "inputs_child.yaml").write_text(
        "# @package _global_\ndefaults:\n  - sim_base\nengine: inputs\nexp_name: inputs_child\n")
    assert engines.for_experiment("inputs_child").name == "inputs"


def test_the_inherited_engine_is_the_one_the_command_must_name(config_tree, capsys):
    assert cli.main(["train", "+exp=sim_child"]) == 2
    assert "bnexp simulate" in capsys.readouterr().err
    assert cli.main(["simulate", "+exp=sim_child", *TINY]) == 0


def test_without_an_engine_the_command_decides(config_tree):
    (config_tree / "exp" / "plain.yaml").write_text("# @package _global_\nexp_name: plain\n")
    assert engines.for_experiment("plain").name == "train"
    assert engines.for_args(["+exp=plain"], "inputs").name == "inputs"
    assert engines.for_args(["engine=simulate"], "train").name == "simulate"


@pytest.mark.parametrize("where", ["override", "experiment", "config"])
def test_an_unknown_engine_names_the_valid_ones(config_tree, where):
    (config_tree / "exp" / "bad.yaml").write_text("# @package _global_\nengine: simulat\nexp_name: bad\n")
    with pytest.raises(ConfigError, match=r"engine.*'simulat'.*inputs, simulate, train") as info:
        if where == "override":
            engines.for_args(["engine=simulat"])
        elif where == "experiment":
            engines.for_experiment("bad")
        else:
            cfg = config.compose("simulate", TINY)
            cfg.engine = "simulat"
            engines.validate(cfg)
    if where == "experiment":
        assert "exp/bad.yaml" in str(info.value)


def test_every_engine_validates_and_runs_through_its_module():
    for name, engine in engines.ENGINES.items():
        assert engine.config_name == name
        cfg = config.compose(engine.config_name, [])
        assert cfg.engine == name
        engine.validate(cfg)

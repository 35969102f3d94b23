"""`bnexp data`: a dataset already on disk is used as it is; Fashion-MNIST is installed from Debian's package
where apt may run (here a stand-in `apt-get` on PATH that records its calls and puts the files where the
package does); otherwise the one command that gets the data is printed. (The real package is installed by
`make quick` in CI, on a fresh machine.)"""

from __future__ import annotations

import gzip
import os
import stat

import pytest

from bnexp import cli
from bnexp.data import obtain, vision

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    """An `apt-get` first on PATH: records each call; `install` fails until `update` ran once if
    APT_NEEDS_UPDATE is set, then writes the four .gz files into the Debian directory (patched to tmp)."""
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(vision, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setattr(obtain, "apt_prefix", lambda: [])
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    script = bin_dir / "apt-get"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  update) touch {tmp_path}/updated; exit 0;;
  install)
    if [ -n "$APT_NEEDS_UPDATE" ] && [ ! -e {tmp_path}/updated ]; then
      echo "E: Unable to locate package" >&2; exit 100
    fi
    mkdir -p {debian}
    for f in {' '.join(IDX)}; do printf x | gzip > {debian}/$f.gz; done;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _calls(log):
    return log.read_text().splitlines() if log.exists() else []


def test_a_dataset_on_disk_is_used_and_apt_is_not_called(fake_apt, tmp_path):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX:
        with gzip.open(raw / f"{name}.gz", "wb") as f:
            f.write(b"x")
    lines = []
    assert obtain.obtain("fashion_mnist", tmp_path / "root", log=lines.append) == raw
    assert _calls(fake_apt) == [] and "found in" in lines[0]


@pytest.mark.parametrize("needs_update", [False, True])
def test_fashion_mnist_comes_from_the_debian_package(fake_apt, tmp_path, monkeypatch, needs_update):
    if needs_update:  # a fresh machine without package lists: install fails, update, install again
        monkeypatch.setenv("APT_NEEDS_UPDATE", "1")
    lines = []
    found = obtain.obtain("fashion_mnist", tmp_path / "empty", download=False, log=lines.append)
    assert found == vision.DEBIAN_FASHION_MNIST
    install = "install -y -qq dataset-fashion-mnist"
    assert _calls(fake_apt) == ([install, "update -qq", install] if needs_update else [install])
    assert "installed in" in lines[-1]


def test_without_apt_or_network_it_says_the_one_command_that_gets_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(vision, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setattr(obtain, "apt_prefix", lambda: None)
    lines = []
    assert obtain.obtain("fashion_mnist", tmp_path / "root", download=False, log=lines.append) is None
    assert "apt-get needs root or passwordless sudo" in lines[-1]
    assert "sudo apt-get install dataset-fashion-mnist" in lines[-1]


def test_bnexp_data_exits_1_naming_the_command_and_2_for_an_unknown_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BNEXP_DATA", str(tmp_path))  # --data-root sets it; monkeypatch puts it back afterwards
    assert cli.main(["data", "mnist", "--no-apt", "--no-download", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "mnist: not available" in out and f"bnexp data mnist --data-root {tmp_path}" in out
    assert cli.main(["data", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "dataset='imagenet'" in err and "cifar10" in err and "fashion_mnist" in err


def test_bnexp_data_names_what_the_quick_figures_need(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BNEXP_DATA", str(tmp_path))
    monkeypatch.setattr(vision, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    assert cli.main(["data", "--no-apt", "--no-download", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "fashion_mnist: not available" in out and "mnist:" not in out.replace("fashion_mnist", "")


def test_where_apt_cannot_help_torchvisions_download_is_tried_once(tmp_path, monkeypatch):
    calls = []

    def download(spec, root):  # stands in for torchvision's download: puts the files where it would
        calls.append((spec.name, root))
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in IDX:
            (raw / name).write_bytes(b"x")
        return ""

    monkeypatch.setattr(vision, "download", download)
    monkeypatch.setattr(obtain, "apt_prefix", lambda: pytest.fail("MNIST has no Debian package to try"))
    lines = []
    assert obtain.obtain("mnist", tmp_path, log=lines.append) == tmp_path / "MNIST" / "raw"
    assert calls == [("mnist", tmp_path)] and "downloaded to" in lines[-1]

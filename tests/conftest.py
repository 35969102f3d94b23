"""Shared fixtures: every test writes its runs and figures under its own temporary outputs directory."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _outputs(tmp_path, monkeypatch):
    """Point BNEXP_OUTPUTS at a fresh directory so tests never touch ./outputs or each other."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("BNEXP_OUTPUTS", str(root))
    yield root


@pytest.fixture(autouse=True)
def _one_thread():
    # The suite is dominated by small matrices, which are fastest on one thread; restore afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def outputs(_outputs):
    return _outputs


@pytest.fixture
def broken_mnist(tmp_path):
    """A data root whose MNIST files (the four IDX names) hold garbage: they pass the data check before a run,
    and a run that reads them fails. For tests of what happens to a failing run."""
    raw = tmp_path / "broken-data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    return tmp_path / "broken-data"

"""Random streams of a training run: torch's global generator seeded per replicate, forked, saved and restored.

The minibatch indices come from a CPU generator seeded with the replicate's ``shuffle`` stream
(``data.derive_seed``); torch's global generator (dropout) is seeded from a child of that stream inside
``torch.random.fork_rng`` (:func:`train_seed`), so runs are reproducible and the caller's global state is
untouched. Pre-training draws from the next child (``train_seed(seed) + 1``), measurements from a fork, so
neither shifts the training stream. :func:`rng_state` / :func:`set_rng_state` carry the global states
through a checkpoint.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from bnexp import data

__all__ = ["forked_rng", "pretrain_seeded", "rng_state", "set_rng_state", "train_seed"]


def train_seed(seed: int) -> int:
    """The seed of torch's global generator while replicate ``seed`` trains: a child of its ``shuffle`` stream
    (independent of the data, shuffle, model and weight draws)."""
    return data.derive_seed(seed, "shuffle", 1)


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int | None = None):
    """torch's global generators (the CPU's and, on CUDA, the device's) forked for the block, restored on exit;
    seeded with ``seed`` when given."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def pretrain_seeded(prepare, model: nn.Module, x_train: Tensor, y_train: Tensor, seed: int,
                    device: torch.device) -> dict:
    """``prepare(model, x_train, y_train, seed)`` (pre-training) with torch's global generator seeded from
    replicate ``seed`` (``train_seed(seed) + 1``) in a fork: it never shifts the training stream."""
    with forked_rng(device, train_seed(seed) + 1):
        return prepare(model, x_train, y_train, seed)


def rng_state(device: torch.device) -> dict:
    """torch's global generator states (CPU, and the CUDA device's)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)

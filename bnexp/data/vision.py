"""Real image datasets in torchvision's on-disk formats, read from ``data.root``.

| name          | files (torchvision's layout under ``data.root``)                           | shape       | classes |
|---------------|----------------------------------------------------------------------------|-------------|---------|
| mnist         | ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (IDX, or .gz)   | (1, 28, 28) | 10      |
| fashion_mnist | ``FashionMNIST/raw/``, the same four IDX files                             | (1, 28, 28) | 10      |
| cifar10       | ``cifar-10-batches-py/{data_batch_1..5, test_batch}`` (python pickles)     | (3, 32, 32) | 10      |
| cifar100      | ``cifar-100-python/{train, test}`` (python pickles, fine labels)           | (3, 32, 32) | 100     |

Files are read with torchvision's own IDX reader (``torchvision.datasets.mnist.read_image_file`` and
``read_label_file``; a ``.gz`` file is decompressed to a temporary file first) and with the pickle layout of
``torchvision.datasets.CIFAR10/100``. IDX files are also found directly in ``<root>/<Class>/``, and
Fashion-MNIST also in :data:`DEBIAN_FASHION_MNIST`, where the Debian package ``dataset-fashion-mnist`` puts
the ``.gz`` files. When no directory has the files and ``data.download`` is true, torchvision's
``download=True`` is tried once (into ``data.root``); without files and network,
:class:`DatasetNotFound` names the dataset, the directories searched, the files expected and the offline
alternatives.

Pixels are ``ToTensor``'s: uint8 / 255 in float32, shape (C, H, W). Raw files are cached per process.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import socket
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from bnexp.data.base import Source, Split, check_int_key, check_optional_int, derive_seed
from bnexp.errors import ConfigError

# Where Debian's dataset-fashion-mnist package installs Fashion-MNIST (a module constant: tests patch it).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 30  # socket timeout of the one download attempt
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYNTHETIC_HINT = "or use a synthetic source (data=powerlaw, data=shifted_gaussian)"


@dataclass(frozen=True)
class Vision:
    """One torchvision dataset: its config name, torchvision class, on-disk format and classes."""

    name: str
    title: str
    torchvision_class: str  # torchvision.datasets.<class>, used to download
    fmt: str  # "idx" | "cifar"
    n_classes: int
    folder: str  # the folder under data.root holding the files

    def candidates(self, root: Path) -> list[Path]:
        """Directories searched, in order."""
        if self.fmt == "cifar":
            return [root / self.folder]
        dirs = [root / self.folder / "raw", root / self.folder]
        return [*dirs, DEBIAN_FASHION_MNIST] if self.name == "fashion_mnist" else dirs

    def files(self) -> tuple[str, ...]:
        """File names expected in a candidate directory (IDX: each plain or ``.gz``)."""
        if self.fmt == "idx":
            return IDX_FILES
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if self.name == "cifar10" else CIFAR100
        return tuple(name for name, _ in cls.train_list + cls.test_list)


SPECS = {
    "mnist": Vision("mnist", "MNIST", "MNIST", "idx", 10, "MNIST"),
    "fashion_mnist": Vision("fashion_mnist", "Fashion-MNIST", "FashionMNIST", "idx", 10, "FashionMNIST"),
    "cifar10": Vision("cifar10", "CIFAR-10", "CIFAR10", "cifar", 10, "cifar-10-batches-py"),
    "cifar100": Vision("cifar100", "CIFAR-100", "CIFAR100", "cifar", 100, "cifar-100-python"),
}

# data.normalize: dataset — the depth paper's per-dataset ToTensor-then-Normalize constants (mean, std).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class DatasetNotFound(ConfigError):
    """A real dataset is neither on disk nor downloadable; the message says where it looked and what to do."""

    def __init__(self, spec: Vision, root: Path, download: str):
        searched = []
        for d in spec.candidates(root):
            note = " (Debian package dataset-fashion-mnist)" if d == DEBIAN_FASHION_MNIST else ""
            searched.append(f"{d}{note}")
        suffix = " (each plain or .gz)" if spec.fmt == "idx" else ""
        target = spec.candidates(root)[0]
        offline = [f"copy the files into {target} (on a machine with a network: python -c \"import torchvision; "
                   f"torchvision.datasets.{spec.torchvision_class}('{root}', download=True)\")"]
        if spec.name == "fashion_mnist":
            offline.insert(0, f"install the Debian package dataset-fashion-mnist (apt-get install "
                              f"dataset-fashion-mnist), which puts the .gz files in {DEBIAN_FASHION_MNIST}")
        message = (f"{spec.name} ({spec.title}) not found. Looked in: {', '.join(searched)} for "
                   f"{', '.join(spec.files())}{suffix}. Download: {download}. Offline: {'; or '.join(offline)}; "
                   f"{SYNTHETIC_HINT}. data.root defaults to $BNEXP_DATA, else ./data")
        super().__init__("data.root", str(root), message)


def _has_files(spec: Vision, directory: Path) -> bool:
    if spec.fmt == "idx":
        return all((directory / f).is_file() or (directory / f"{f}.gz").is_file() for f in spec.files())
    return all((directory / f).is_file() for f in spec.files())


def find(spec: Vision, root: Path) -> Path | None:
    """The first searched directory that holds every file of ``spec``, or None."""
    return next((d for d in spec.candidates(root) if _has_files(spec, d)), None)


def download(spec: Vision, root: Path) -> str:
    """Try torchvision's download into ``root``; '' on success, else the reason."""
    import torchvision.datasets

    created = [d for d in (root, root / spec.folder, root / spec.folder / "raw") if not d.exists()]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        getattr(torchvision.datasets, spec.torchvision_class)(str(root), train=True, download=True)
    except Exception as err:  # any failure (no network, bad checksum, disk) ends in one clear error
        for d in reversed(created):  # leave no empty directories behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = " … ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else ""
        return f"failed ({type(err).__name__}: {detail})"
    finally:
        socket.setdefaulttimeout(previous)
    return ""


def locate(cfg: DictConfig, *, allow_download: bool = True) -> Path:
    """The directory holding dataset ``cfg.name`` under ``cfg.root`` (or the Debian fallback), downloading it
    with torchvision when ``data.download`` and ``allow_download``; else :class:`DatasetNotFound`."""
    spec, root = SPECS[cfg.name], Path(str(cfg.root))
    found = find(spec, root)
    if found is not None:
        return found
    if not cfg.get("download", True):
        raise DatasetNotFound(spec, root, "off (data.download=false)")
    if not allow_download:  # validation: the download is attempted when the run starts
        return root
    reason = download(spec, root)
    found = find(spec, root)
    if found is None:
        raise DatasetNotFound(spec, root, reason or "finished, but the files are still missing")
    return found


def check_available(cfg: DictConfig) -> None:
    """Before any work: the files are there, or a download will be attempted."""
    locate(cfg, allow_download=False)


# ------------------------------------------------------------------------------------------------ readers


def _read_idx(path: Path, reader) -> Tensor:
    """One IDX file through torchvision's reader; ``.gz`` is decompressed to a temporary file first. A file
    the reader cannot parse raises ValueError naming it (torchvision's own check is a bare assert)."""
    source = path if path.is_file() else Path(f"{path}.gz")
    try:
        if path.is_file():
            return reader(str(path))
        with gzip.open(source, "rb") as src, tempfile.NamedTemporaryFile(suffix=".idx") as tmp:
            shutil.copyfileobj(src, tmp, 1 << 24)
            tmp.flush()
            return reader(tmp.name)
    except Exception as err:
        detail = f"{type(err).__name__}{': ' + str(err) if str(err) else ''}"
        raise ValueError(f"{source} is not a readable IDX file ({detail}); replace it with the dataset's "
                         "original file") from err


def _read_cifar(directory: Path, names: list[str]) -> tuple[Tensor, Tensor]:
    """torchvision's CIFAR reading: pickled dicts with ``data`` (N, 3072) uint8 and ``labels``/``fine_labels``."""
    images, labels = [], []
    for name in names:
        with open(directory / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images.append(entry["data"])
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    x = np.vstack(images).reshape(-1, 3, 32, 32)  # ToTensor's (C, H, W) of the stored HWC image
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor(labels, dtype=torch.long)


@lru_cache(maxsize=8)
def read_split(name: str, directory: str, train: bool, stamp: tuple) -> tuple[Tensor, Tensor]:
    """(uint8 images (N, C, H, W), int64 labels (N,)) of one split; cached per (files, modification time)."""
    spec, directory = SPECS[name], Path(directory)
    if spec.fmt == "idx":
        from torchvision.datasets.mnist import read_image_file, read_label_file

        prefix = "train" if train else "t10k"
        x = _read_idx(directory / f"{prefix}-images-idx3-ubyte", read_image_file).unsqueeze(1)
        y = _read_idx(directory / f"{prefix}-labels-idx1-ubyte", read_label_file)
    else:
        from torchvision.datasets import CIFAR10, CIFAR100

        cls = CIFAR10 if name == "cifar10" else CIFAR100
        x, y = _read_cifar(directory, [f for f, _ in (cls.train_list if train else cls.test_list)])
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} images but {len(y)} labels in {directory}")
    return x, y


def _stamp(directory: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir() if p.is_file()))


# ------------------------------------------------------------------------------------------------ sources


def _check(cfg: DictConfig) -> None:
    spec = SPECS[cfg.name]
    if cfg.get("root") is None or not str(cfg.root):
        raise ConfigError("data.root", cfg.get("root"), "must be a directory (torchvision's root)")
    if check_int_key(cfg, "n_classes", 2) != spec.n_classes:
        raise ConfigError("data.n_classes", cfg.n_classes, f"{spec.name} has {spec.n_classes} classes")
    check_optional_int(cfg, "n_train", 1)
    check_optional_int(cfg, "n_test", 1)


def _subset(n_total: int, n: int | None, key: str, name: str, g: torch.Generator, shuffle: bool) -> Tensor:
    if n is not None and n > n_total:
        raise ConfigError(key, n, f"the {name} split has {n_total} samples")
    order = torch.randperm(n_total, generator=g) if shuffle or n is not None else torch.arange(n_total)
    return order if n is None else order[:n]


def _build(cfg: DictConfig, seed: int) -> Split:
    """The training set in a random order (its first ``n_train`` samples when set), the test set in file
    order (a random ``n_test`` subset when set); both orders drawn from the ``data`` stream."""
    directory = locate(cfg)
    g = torch.Generator().manual_seed(derive_seed(seed, "data"))
    out = []
    for train, key in ((True, "n_train"), (False, "n_test")):
        x, y = read_split(cfg.name, str(directory), train, _stamp(directory))
        idx = _subset(len(x), cfg.get(key), f"data.{key}", cfg.name, g, shuffle=train)
        out += [x[idx].to(torch.float32) / 255, y[idx]]
    return out[0], out[1], out[2], out[3]


SOURCES = {name: Source(_check, _build, STATS[name], check_available) for name in SPECS}

"""Real datasets read from tiny files in their real on-disk formats (IDX ubyte, plain and .gz; CIFAR python
pickles), the missing-files error, the Debian Fashion-MNIST fallback, normalisation, subsets, the synthetic
sources and degenerate probe batches."""

from __future__ import annotations

import gzip
import pickle
import struct
import urllib.error

import numpy as np
import pytest
import torch

from bnexp import data, metrics
from bnexp.config import compose
from bnexp.data import vision
from bnexp.errors import ConfigError


def _cfg(*overrides: str):
    return compose("train", list(overrides)).data


def write_idx(path, array: np.ndarray, *, gz: bool = False) -> None:
    """An IDX file: magic 0x0000 08 <ndim> (unsigned bytes), big-endian uint32 sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    with (gzip.open(f"{path}.gz", "wb") if gz else open(path, "wb")) as f:
        f.write(payload)


def idx_dataset(directory, n_train: int = 12, n_test: int = 5, *, gz: bool = False, seed: int = 0) -> dict:
    """The four MNIST-layout IDX files of random 28×28 images and labels in ``directory``; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
              "t10k": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    for prefix, (images, labels) in arrays.items():
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
    return arrays


def cifar_dataset(root, hundred: bool = False, per_file: int = 3, seed: int = 0) -> dict:
    """CIFAR python batches (pickled dicts with uint8 ``data`` rows R|G|B of 32×32 and the labels) in
    torchvision's layout: cifar-10-batches-py/data_batch_1..5, test_batch or cifar-100-python/train, test."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if hundred else [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    out = {}
    for name in names:
        rows = rng.integers(0, 256, (per_file, 3072)).astype(np.uint8)
        labels = rng.integers(0, 100 if hundred else 10, per_file).tolist()
        entry = {"data": rows, "filenames": [f"{name}_{i}.png" for i in range(per_file)]}
        if hundred:
            entry.update(fine_labels=labels, coarse_labels=[v // 5 for v in labels])
        else:
            entry["labels"] = labels
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        out[name] = (rows, labels)
    return out


# ------------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_load_through_torchvision_reader(tmp_path, gz, name, folder):
    arrays = idx_dataset(tmp_path / folder / "raw", gz=gz)
    cfg = _cfg(f"data={name}", f"data.root={tmp_path}", "data.download=false", "data.normalize=none",
               "data.batch_size=4")
    x_train, y_train, x_test, y_test = data.make_dataset(cfg, seed=0)
    assert x_train.shape == (12, 1, 28, 28) and x_test.shape == (5, 1, 28, 28)  # (C, H, W) kept
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    images, labels = arrays["train"]
    # the training set comes in a random order; every sample is a file sample, pixel / 255
    flat = torch.from_numpy(images.reshape(12, -1)).float() / 255
    match = (x_train.flatten(1)[:, None, :] == flat[None]).all(-1)  # (12, 12)
    assert match.sum(1).eq(1).all() and match.sum(0).eq(1).all()
    order = match.float().argmax(1)
    assert torch.equal(y_train, torch.from_numpy(labels)[order])
    # the test set keeps the file order
    assert torch.equal(x_test[:, 0], torch.from_numpy(arrays["t10k"][0]).float() / 255)
    assert torch.equal(y_test, torch.from_numpy(arrays["t10k"][1]))


def test_dataset_normalisation_is_the_papers_and_subsets_are_seeded(tmp_path):
    idx_dataset(tmp_path / "MNIST" / "raw", n_train=20, n_test=9)
    base = [f"data.root={tmp_path}", "data=mnist", "data.download=false", "data.batch_size=4"]
    raw, _, raw_test, _ = data.make_dataset(_cfg(*base, "data.normalize=none"), seed=0)
    norm, _, norm_test, _ = data.make_dataset(_cfg(*base), seed=0)  # default: normalize=dataset
    torch.testing.assert_close(norm, (raw - 0.1307) / 0.3081)
    torch.testing.assert_close(norm_test, (raw_test - 0.1307) / 0.3081)
    sub = _cfg(*base, "data.n_train=6", "data.n_test=3")
    a, b, c = (data.make_dataset(sub, seed=s) for s in (1, 1, 2))
    assert a[0].shape == (6, 1, 28, 28) and a[2].shape == (3, 1, 28, 28)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not torch.equal(a[0], c[0])
    with pytest.raises(ConfigError, match=r"data\.n_train=21.*20 samples"):
        data.make_dataset(_cfg(*base, "data.n_train=21", "data.batch_size=4"), seed=0)
    with pytest.raises(ConfigError, match=r"data\.n_classes=7.*10 classes"):
        data.validate(_cfg(*base, "data.n_classes=7"))


# ------------------------------------------------------------------------------------------------ CIFAR


def test_cifar10_pickles_load_in_channel_first_layout(tmp_path):
    batches = cifar_dataset(tmp_path)
    cfg = _cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false", "data.normalize=none",
               "data.batch_size=4")
    x_train, _, x_test, y_test = data.make_dataset(cfg, seed=0)
    assert x_train.shape == (15, 3, 32, 32) and x_test.shape == (3, 3, 32, 32)
    rows, labels = batches["test_batch"]
    # ToTensor of the stored image: x[i, c, h, w] = row[c·1024 + 32 h + w] / 255
    for i in range(3):
        for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
            assert x_test[i, c, h, w].item() == np.float32(rows[i, c * 1024 + 32 * h + w]) / np.float32(255)
    assert y_test.tolist() == labels
    all_train = np.vstack([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert sorted(map(tuple, (x_train.flatten(1) * 255).round().to(torch.uint8).tolist())) == sorted(
        map(tuple, all_train.tolist()))
    # explicit [mean, std] pair, one value for every channel (the ortho paper's MNIST constants on CIFAR)
    pair = data.make_dataset(_cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false",
                                  "data.normalize=[0.1307,0.3081]", "data.batch_size=4"), seed=0)[2]
    torch.testing.assert_close(pair, (x_test - 0.1307) / 0.3081)
    per_channel = data.make_dataset(_cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false",
                                         "data.batch_size=4"), seed=0)[2]  # normalize=dataset
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.247, 0.243, 0.261]).view(1, 3, 1, 1)
    torch.testing.assert_close(per_channel, (x_test - mean) / std)


def test_cifar100_uses_the_fine_labels(tmp_path):
    batches = cifar_dataset(tmp_path, hundred=True, per_file=4)
    cfg = _cfg("data=cifar100", f"data.root={tmp_path}", "data.download=false", "data.batch_size=2")
    x_train, y_train, _, y_test = data.make_dataset(cfg, seed=0)
    assert x_train.shape == (4, 3, 32, 32) and y_test.tolist() == batches["test"][1]
    assert sorted(y_train.tolist()) == sorted(batches["train"][1])


# ------------------------------------------------------------------------------------------------ missing files


def test_missing_files_without_download_fail_before_any_work(tmp_path):
    cfg = _cfg("data=cifar10", f"data.root={tmp_path}", "data.download=false")
    with pytest.raises(ConfigError) as err:
        data.validate(cfg)
    text = str(err.value)
    for needle in ("data.root", "cifar10", str(tmp_path / "cifar-10-batches-py"), "data_batch_1", "test_batch",
                   "data.download=false", "Offline", "data=powerlaw"):
        assert needle in text, needle


def test_failed_download_names_the_reason_and_leaves_no_directories(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class NoNetwork:
        def __init__(self, root, train, download):
            calls.append((root, download))
            (tmp_path / "MNIST" / "raw").mkdir(parents=True)  # torchvision creates its folders first
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried a mirror, got:\n"
                               f"{urllib.error.URLError('Name or service not known')}")

    monkeypatch.setattr(torchvision.datasets, "MNIST", NoNetwork)
    cfg = _cfg("data=mnist", f"data.root={tmp_path}")
    data.validate(cfg)  # download allowed: validation leaves the attempt to the run
    with pytest.raises(vision.DatasetNotFound) as err:
        data.make_dataset(cfg, seed=0)
    text = str(err.value)
    assert calls == [(str(tmp_path), True)]
    for needle in ("mnist", str(tmp_path / "MNIST" / "raw"), "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                   ".gz", "Name or service not known", "download=True"):
        assert needle in text, needle
    assert not (tmp_path / "MNIST").exists()


def test_fashion_mnist_falls_back_to_the_debian_package(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(vision, "DEBIAN_FASHION_MNIST", debian)
    root = tmp_path / "empty-root"
    cfg = _cfg("data=fashion_mnist", f"data.root={root}", "data.download=false", "data.normalize=none",
               "data.batch_size=4")
    with pytest.raises(ConfigError) as err:
        data.validate(cfg)
    assert str(debian) in str(err.value) and "dataset-fashion-mnist" in str(err.value)
    arrays = idx_dataset(debian, gz=True)  # the Debian package ships the four .gz files
    x_train, _, x_test, _ = data.make_dataset(cfg, seed=0)
    assert x_train.shape == (12, 1, 28, 28)
    assert torch.equal(x_test[:, 0], torch.from_numpy(arrays["t10k"][0]).float() / 255)
    assert vision.find(vision.SPECS["fashion_mnist"], root) == debian
    # data.root wins over the fallback
    idx_dataset(root / "FashionMNIST" / "raw", seed=1)
    assert vision.find(vision.SPECS["fashion_mnist"], root) == root / "FashionMNIST" / "raw"
    assert vision.find(vision.SPECS["mnist"], root) is None  # MNIST never reads Fashion-MNIST's files


def test_a_real_dataset_trains_through_the_network_engine(tmp_path, outputs):
    from bnexp import cli, results

    idx_dataset(tmp_path / "MNIST" / "raw", n_train=16, n_test=8)
    code = cli.main(["train", "data=mnist", f"data.root={tmp_path}", "data.batch_size=8", "model.depth=2",
                     "model.width=16", "optim.epochs=1", "runtime.progress=false", "data.distinct=2"])
    assert code == 0
    (run,) = (outputs / "runs" / "adhoc").glob("*/metrics.csv")
    df = results.read_metrics(run.parent)
    assert {"train_loss", "test_acc", "rank_torch"} <= set(df.metric)
    assert df[(df.metric == "rank_torch") & (df.step == 0)].value.max() <= 2  # a degenerate probe batch


# ------------------------------------------------------------------------------------------------ normalize


@pytest.mark.parametrize(("value", "needle"), [
    ("[1]", "pair"), ("[0.5,0]", "std > 0"), ("[[0.1,0.2],[0.3]]", "same length"), ("bogus", "dataset, none"),
])
def test_bad_normalize_names_the_key(value, needle):
    with pytest.raises(ConfigError, match=r"data\.normalize") as err:
        data.validate(_cfg("data=shifted_gaussian", f"data.normalize={value}"))
    assert needle in str(err.value)


def test_dataset_statistics_exist_only_for_real_datasets():
    with pytest.raises(ConfigError, match=r"data\.normalize='dataset'.*powerlaw has no dataset statistics"):
        data.validate(_cfg("data=powerlaw", "data.normalize=dataset"))
    x = data.make_dataset(_cfg("data=shifted_gaussian", "data.normalize=[[1,2,3],[1,1,2]]", "data.n_train=8",
                               "data.n_test=2"), seed=0, dtype=torch.float64)[0]
    raw = data.make_dataset(_cfg("data=shifted_gaussian", "data.n_train=8", "data.n_test=2"), seed=0,
                            dtype=torch.float64)[0]
    torch.testing.assert_close(x[:, 2], (raw[:, 2] - 3) / 2)
    with pytest.raises(ConfigError, match="has 3 channels"):
        data.make_dataset(_cfg("data=powerlaw", "data.normalize=[[1,2,3],[1,1,2]]", "data.n_train=8",
                               "data.n_test=2", "data.batch_size=4"), seed=0)


# ------------------------------------------------------------------------------------------------ synthetic


def test_near_identity_is_the_depth_papers_fig1_input():
    cfg = _cfg("data=near_identity", "data.dim=20", "data.f=0.1")
    x, y, x_test, _ = data.make_dataset(cfg, seed=0, dtype=torch.float64)
    assert x.shape == (20, 20) and cfg.batch_size == 20 and cfg.n_classes == 20
    rest = x - 0.9 * torch.eye(20, dtype=torch.float64)  # f·u vᵀ: rank one, entries in [0, f]
    assert torch.linalg.matrix_rank(rest).item() == 1 and 0 <= rest.min() and rest.max() <= 0.1
    assert int(y.max()) < 20 and not torch.equal(x, x_test)
    assert metrics.rank_np(x).item() == 20
    with pytest.raises(ConfigError, match=r"data\.n_train"):
        data.validate(_cfg("data=near_identity", "data.dim=20", "+data.n_train=10"))


def test_shifted_gaussian_is_offset_plus_noise():
    cfg = _cfg("data=shifted_gaussian", "data.n_train=400", "data.n_test=4")
    x, y, *_ = data.make_dataset(cfg, seed=0, dtype=torch.float64)
    assert x.shape == (400, 3, 16, 16) and int(y.max()) < 10
    assert float(x.mean()) == pytest.approx(1.1, abs=0.01) and float(x.std()) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ConfigError, match=r"data\.shape"):
        data.validate(_cfg("data=shifted_gaussian", "data.shape=[3,0,16]"))


def test_powerlaw_float32_gram_rank_falls_below_n_while_the_exact_rank_is_n():
    cfg = _cfg("data=powerlaw", "data.n_train=1024", "data.n_test=8")
    x, *_ = data.make_dataset(cfg, seed=0)  # float32 pixels
    assert x.shape == (1024, 1, 28, 28)
    assert float(x.mean()) == pytest.approx(0.45, abs=0.01) and float(x.std()) == pytest.approx(0.2, abs=0.02)
    flat = x.flatten(1)
    big = flat[:512]
    assert metrics.rank_gram_float32(big).item() < 0.9 * 512
    assert metrics.rank_np(big).item() == 512
    for n in (16, 32, 64):
        assert metrics.rank_gram_float32(flat[:n]).item() == n


# ------------------------------------------------------------------------------------------------ degenerate batches


def test_degenerate_probe_batch_repeats_distinct_samples():
    cfg = _cfg("data.n_train=40", "data.n_test=8", "data.batch_size=12", "data.distinct=4")
    data.validate(cfg)
    x_train, y_train, *_ = data.make_dataset(cfg, seed=0, dtype=torch.float64)
    x, y = data.probe_batch(x_train, y_train, 12, cfg.distinct)
    assert torch.equal(x, x_train[:4].repeat_interleave(3, dim=0)) and torch.equal(y, y_train[:4].repeat_interleave(3))
    assert metrics.rank_np(x).item() == 4
    x_full, _ = data.probe_batch(x_train, y_train, 12)
    assert torch.equal(x_full, x_train[:12])
    with pytest.raises(ConfigError, match=r"^data\.distinct=5.*divide data\.batch_size = 12"):
        data.validate(_cfg("data.batch_size=12", "data.distinct=5"))
    with pytest.raises(ConfigError, match=r"data\.distinct"):
        data.probe_batch(x_train, y_train, 12, 5)
    with pytest.raises(ConfigError, match=r"data\.distinct=0"):
        data.validate(_cfg("data.distinct=0"))

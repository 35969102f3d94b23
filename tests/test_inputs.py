"""The input-batch engine (`bnexp inputs`) and its float32 Gram rank metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnexp import cli, metrics, results
from bnexp.engines import inputs

TINY = ["data=shifted_gaussian", "data.n_train=64", "data.n_test=4", "data.batch_size=8", "batches=5",
        "runtime.progress=false"]


def with_spectrum(s: list[float], n: int, d: int, seed: int = 0) -> torch.Tensor:
    """(n, d) matrix U diag(s) Vᵀ with random orthonormal U (n×k), V (d×k)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


@pytest.mark.parametrize("n,d", [(16, 40), (32, 32), (24, 12)])
def test_rank_gram_float32_matches_numpy_and_counts_only_resolved_eigenvalues(n, d):
    # Gram eigenvalues s²: half ≥ 1e-4 (resolved), the rest 1e-12 relative (below float32 rounding of G,
    # ≈ 1e-7 λ_max, and below the tolerance n·1.19e-7 λ_max); the float64 rank of H itself sees all of them.
    k = min(n, d)
    s = [1.0 / (1 + i) for i in range(k // 2)] + [1e-6] * (k - k // 2)
    h = torch.stack([with_spectrum(s, n, d, seed=i) for i in range(3)])  # (3, n, d)
    got = metrics.rank_gram_float32(h)
    assert got.dtype == torch.float64 and got.shape == (3,)
    for b in range(3):
        x = h[b].numpy().astype(np.float32)
        assert got[b].item() == np.linalg.matrix_rank(x @ x.T)  # numpy: S.max()·n·eps32, the same rule
    assert got.tolist() == [k // 2] * 3
    assert metrics.rank_np(h).tolist() == [k] * 3
    assert metrics.rank_gram_float32(torch.full((4, 6), torch.nan)).isnan().item()


def test_draw_batches_are_without_replacement_and_seeded():
    rows = inputs.draw_batches(20, 8, 50, torch.Generator().manual_seed(0))
    assert rows.shape == (50, 8) and all(len(set(r.tolist())) == 8 for r in rows)
    assert torch.equal(rows, inputs.draw_batches(20, 8, 50, torch.Generator().manual_seed(0)))
    degenerate = inputs.draw_batches(20, 8, 3, torch.Generator().manual_seed(0), distinct=2)
    assert all(len(set(r.tolist())) == 2 and torch.equal(r, r[::4].repeat_interleave(4)) for r in degenerate)


def test_inputs_command_writes_one_row_per_batch_and_metric(outputs, capsys):
    assert cli.main(["inputs", *TINY]) == 0
    (run_json,) = (outputs / "runs" / "adhoc").glob("*/run.json")
    info = results.read_status(run_json.parent)
    assert info["status"] == "done" and info["engine"] == "inputs" and info["threads"] == 1
    df = results.read_metrics(run_json.parent)
    assert set(df.metric) == {"rank_gram_float32", "rank_np", "mean_cosine"}
    assert sorted(df.step.unique()) == [0, 1, 2, 3, 4] and df.layer.isna().all() and len(df) == 15
    assert (df[df.metric == "rank_np"].value == 8).all()
    cos = df[df.metric == "mean_cosine"].value  # offset 1.1, unit noise in 768 dims: cos ≈ 1.21 / 2.21
    assert np.allclose(cos, 1.21 / 2.21, atol=0.03)
    # a degenerate batch: 2 distinct samples, each 4 times
    assert cli.main(["inputs", *TINY, "data.distinct=2", "metrics=[rank_np]"]) == 0
    runs = [p.parent for p in (outputs / "runs" / "adhoc").glob("*/run.json") if p.parent != run_json.parent]
    assert (results.read_metrics(runs[0]).value == 2).all()
    assert "already done" in (cli.main(["inputs", *TINY]) == 0 and capsys.readouterr().out)


@pytest.mark.parametrize(("args", "needles"), [
    (["batches=0"], ["batches=0"]),
    (["metrics=[foo]"], ["metrics='foo'", "rank_gram_float32"]),
    (["metrics=[]"], ["metrics"]),
    (["data.distinct=3"], ["data.distinct=3", "divide"]),
    (["data.batch_size=65"], ["data.batch_size=65"]),
    (["dtype=float16"], ["dtype"]),
    (["data=cifar10", "data.root=/nonexistent", "data.download=false"], ["cifar10", "/nonexistent"]),
])
def test_bad_values_fail_before_any_work(outputs, capsys, args, needles):
    code = cli.main(["inputs", *TINY, *args])
    text = capsys.readouterr().err
    assert code == 2
    for needle in needles:
        assert needle in text, needle
    assert not (outputs / "runs").exists()


def test_an_inputs_experiment_is_refused_by_the_other_engines(outputs, capsys):
    assert cli.main(["train", "+exp=depth_batch_rank"]) == 2
    assert "bnexp inputs" in capsys.readouterr().err

"""The transfer recipe's activations on disk (same rows as in memory), and batches that depend
on the epoch only (not on how often Keras resets the data)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.aug_views import ViewBatches
from pipeline.feature_cache import DiskRows, predict_to_disk


def test_disk_rows_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3, 2)).astype("float32")
    seen: list[int] = []
    rows = predict_to_disk(lambda b: b * 2, x, 4, tmp_path / "f.bin",
                           lambda desc, done, total: seen.append(done), "features")
    assert isinstance(rows, DiskRows) and rows.shape == (10, 3, 2) and len(rows) == 10
    assert rows.dtype == np.float16
    assert seen == [4, 8, 10]
    want = (x * 2).astype("float16")
    assert np.array_equal(rows[3], want[3]) and np.array_equal(rows[-1], want[-1])
    assert np.array_equal(rows[2:7], want[2:7]) and rows[9:20].shape == (1, 3, 2)
    with pytest.raises(IndexError):
        rows[10]
    (tmp_path / "f.bin").write_bytes(b"\0" * 10)  # cut short behind the reader's back
    with pytest.raises(OSError, match="truncated"):
        rows[5]


def test_view_batches_depend_on_the_epoch_only():
    views = [np.arange(20, dtype="float16").reshape(20, 1) + 100 * v for v in range(3)]
    y = np.eye(2, dtype="float32")[np.arange(20) % 2]
    a, b = ViewBatches(views, y, 8, seed=5), ViewBatches(views, y, 8, seed=5)
    b.set_epoch(4)
    b.on_epoch_end()  # Keras' extra resets (under a strategy) change nothing
    b.set_epoch(1)
    a.set_epoch(1)
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
    a.set_epoch(2)
    assert not np.array_equal(a[0][0], b[0][0])
    got = np.concatenate([a[i][0] for i in range(len(a))]).ravel() % 100
    assert sorted(got.tolist()) == list(range(20))  # every image once per epoch

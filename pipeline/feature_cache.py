"""The transfer recipe's cached activations on disk, read a batch at a time (bounded memory).

Training MobileNetV2 on cached activations kept every augmented view of every training image,
and each view's activations, in memory (4.6 GB peak RSS on the full profile). With a scratch
folder (`FitJob.scratch`), each view is made, run through the frozen backbone straight into a
float16 file, and dropped before the next one; fitting then reads the rows of each batch from
those files.

Rows are read with `os.pread`, not through `np.memmap`: pages of a mapped file count in the
process's resident set (and its high-water mark) once touched, and an epoch touches them all, so
a memory map would bring the peak back whenever the machine has memory to spare. Reads through
the page cache cost the same and are not charged to the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.names import Progress


class DiskRows:
    """A (N, ...) array stored row after row in a file; indexing reads only the rows asked for.

    Supports what the recipe uses: `len`, `shape`, `dtype`, an integer index (one row) and a
    slice with step 1 (consecutive rows), each returning an in-memory ndarray.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str | np.dtype) -> None:
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _read(self, start: int, count: int) -> np.ndarray:
        want = count * self.row_bytes
        buf = os.pread(self._fd, want, start * self.row_bytes)
        if len(buf) != want:  # the file was cut short (disk full while writing, or removed)
            raise OSError(f"feature cache {self.path} is truncated")
        return np.frombuffer(buf, dtype=self.dtype).reshape((count, *self.row_shape))

    def __getitem__(self, key: int | np.integer | slice) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("DiskRows slices need step 1")
            return self._read(start, max(0, stop - start))
        i = int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        return self._read(i % len(self), 1)[0]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def predict_to_disk(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                    path: Path, progress: Progress, desc: str, dtype: str = "float16"
                    ) -> DiskRows:
    """`fn` over `x` in batches, each batch's output appended to `path` as `dtype` rows."""
    row_shape: tuple[int, ...] | None = None
    with open(path, "wb") as fh:
        for i in range(0, len(x), batch):
            out = np.ascontiguousarray(fn(x[i:i + batch].astype("float32")).astype(dtype))
            row_shape = row_shape or out.shape[1:]
            fh.write(out.tobytes())
            progress(desc, min(i + batch, len(x)), len(x))
    if row_shape is None:
        raise ValueError("no rows to cache")
    return DiskRows(path, (len(x), *row_shape), dtype)

"""Series files on the command line: a multi-frame DICOM or a zip of .dcm slices, slice by slice.

The dashboard shows every slice of a series (`images.decode_slices`); `predict` and `explain`
used to read such a file as one image (a multi-frame DICOM's first frame, a zip not at all).
Here a series file becomes one item per slice, named as the dashboard names them ("scan.dcm ·
slice 2 of 3"), so every slice gets its row in the printed output, the JSON, a resumable CSV
and explain's overlays and journal. Only files named .dcm or .zip are opened to count their
slices; anything else (and a series that cannot be read) stays one item, whose read reports the
problem.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import dicom, images

SERIES_SUFFIXES = (".dcm", ".zip")  # files that may hold several slices
CACHED_SERIES = 2  # decoded series kept while their slices are read (slices come in order)


@dataclass(frozen=True)
class Slice:
    """Slice `index` (0-based) of the `count` slices of the series file at `path`."""

    path: str
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.path} · slice {self.index + 1} of {self.count}"


def expand_series(paths: Sequence[str | Path]) -> list[str | Slice]:
    """`paths` as strings, each series file (.dcm or .zip holding more than one slice) replaced
    by its slices in series order (`images.decode_slices`: at most `dicom.MAX_SLICES`)."""
    out: list[str | Slice] = []
    for p in map(str, paths):
        n = 1
        if Path(p).suffix.lower() in SERIES_SUFFIXES:
            # unreadable: read again later, where the reason becomes the file's failure
            with contextlib.suppress(images.ImageError):
                n = _slice_count(p)
        out += [Slice(p, k, n) for k in range(n)] if n > 1 else [p]
    return out


def _slice_count(path: str) -> int:
    """How many slices the series file at `path` holds: a DICOM's frames from its header alone
    (a folder of single-frame .dcm files is not read twice before anything is predicted); a
    zip's slices by decoding it (they are sorted and filtered as the dashboard does)."""
    with images.open_regular(path) as fh:
        if not dicom.is_zip(fh.read(4), path):
            fh.seek(0)
            return dicom.frame_count(fh, path)
    data = images.read_file(path)
    return len(images.decode_slices(data, path)[0])


class SliceReader:
    """Decodes items of `expand_series` for reading threads: a slice from its series, decoded
    once for all its slices (the last `CACHED_SERIES` series are kept), a .zip through the
    series decoder (its reason when it is not a DICOM zip), anything else as one image."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: OrderedDict[str, list[np.ndarray]] = OrderedDict()

    def __call__(self, item: str | Path | Slice) -> np.ndarray:
        if isinstance(item, Slice):
            slices = self._slices(item.path)
            if item.index >= len(slices):
                raise images.ImageError(f"{item}: the file changed while it was read")
            return slices[item.index]
        if str(item).lower().endswith(".zip"):
            return images.decode_slices(images.read_file(item), str(item))[0][0]
        return images.read_image(item)

    def _slices(self, path: str) -> list[np.ndarray]:
        with self._lock:  # one decode per series, even with several threads asking
            if path not in self._series:
                self._series[path] = images.decode_slices(images.read_file(path), path)[0]
                while len(self._series) > CACHED_SERIES:
                    self._series.popitem(last=False)
            self._series.move_to_end(path)
            return self._series[path]

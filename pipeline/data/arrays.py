"""Images decoded once into memory (with an optional disk cache), and batches for Keras.

TensorFlow is imported only inside `make_tf_dataset`: importing the package stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import geometry, images
from pipeline.data.discovery import DatasetError, ImageRecord
from pipeline.data.hashing import parallel_map, stat_key
from pipeline.names import Progress

if TYPE_CHECKING:  # heavy imports stay lazy: `audit` must not pay for TensorFlow
    import tensorflow as tf

_ARRAY_CACHE_VERSION = 1


@dataclass
class LoadedArrays:
    """Decoded, prepared images in memory and the labels of the ones that could be read."""

    x: np.ndarray  # (N, S, S, 3) uint8
    y: np.ndarray  # (N,) int32, index into classes
    records: list[ImageRecord]  # the ones loaded, in order
    failed: list[tuple[str, str]]  # (rel, reason) of files that could not be decoded


def _array_cache_key(records: Sequence[ImageRecord], size: int, crop: bool) -> str:
    h = hashlib.sha256(f"v{_ARRAY_CACHE_VERSION}|{size}|{int(crop)}\n".encode())
    for r in records:
        key = stat_key(Path(r.path))
        size_b, mtime = (key[1], key[2]) if key else (-1, -1)
        h.update(f"{Path(r.path)}\t{r.rel}\t{r.label}\t{size_b}\t{mtime}\n".encode())
    return h.hexdigest()[:32]


def _load_cached(base: Path, records: Sequence[ImageRecord], classes: Sequence[str]
                 ) -> LoadedArrays | None:
    meta_path, x_path = base.with_suffix(".json"), base.with_suffix(".npy")
    if not (meta_path.is_file() and x_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        x = np.load(x_path, allow_pickle=False)
        by_rel = {r.rel: r for r in records}
        loaded = [by_rel[rel] for rel in meta["loaded"]]
        if x.shape[0] != len(loaded):
            return None
        y = np.array([list(classes).index(r.label) for r in loaded], dtype=np.int32)
        return LoadedArrays(x=x, y=y, records=loaded,
                            failed=[(a, b) for a, b in meta["failed"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache is rebuilt


def _save_cached(base: Path, arrays: LoadedArrays) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    tag = f".tmp-{os.getpid()}-{threading.get_ident()}"
    x_tmp = base.parent / (base.name + tag + ".npy")
    m_tmp = base.parent / (base.name + tag + ".json")
    try:
        np.save(x_tmp, arrays.x, allow_pickle=False)
        m_tmp.write_text(json.dumps({"loaded": [r.rel for r in arrays.records],
                                     "failed": arrays.failed}))
        os.replace(x_tmp, base.with_suffix(".npy"))
        os.replace(m_tmp, base.with_suffix(".json"))
    except OSError:
        for p in (x_tmp, m_tmp):
            p.unlink(missing_ok=True)  # caching is an optimisation; never fail a run on it


def load_arrays(records: Sequence[ImageRecord], classes: Sequence[str], size: int,
                crop: bool = True, progress: Progress | None = None,
                cache_dir: str | Path | None = None) -> LoadedArrays:
    """Decode, optionally head-crop and resize every record once into memory.

    Unreadable files are skipped and listed in `failed`. With `cache_dir`, the result is stored as
    .npy keyed by (paths, labels, file sizes and mtimes, size, crop) and reused by later calls.
    """
    classes = list(classes)
    unknown = sorted({r.label for r in records} - set(classes))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the classes {classes}")
    records = list(records)
    base = None
    if cache_dir is not None:
        base = Path(cache_dir) / f"arrays-{size}-{_array_cache_key(records, size, crop)}"
        cached = _load_cached(base, records, classes)
        if cached is not None:
            if progress:
                progress("decoding images (cached)", len(records), len(records))
            return cached

    def work(rec: ImageRecord) -> np.ndarray | str:
        try:
            return geometry.prepare_image(images.read_image(rec.path), size, crop=crop)
        except images.ImageError as exc:
            return str(exc)
        except Exception as exc:  # a bad file must not stop the loading of the others
            return f"{rec.rel}: {type(exc).__name__}: {exc}"

    x = np.empty((len(records), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    failed: list[tuple[str, str]] = []
    results = parallel_map(work, records, "decoding images", progress)
    for i, (rec, res) in enumerate(zip(records, results, strict=True)):
        if isinstance(res, str):
            failed.append((rec.rel, res))
        else:
            x[i] = res
            ok.append(i)
    if len(ok) != len(records):
        x = x[ok]
    loaded = [records[i] for i in ok]
    y = np.array([classes.index(r.label) for r in loaded], dtype=np.int32)
    arrays = LoadedArrays(x=x, y=y, records=loaded, failed=failed)
    if base is not None:
        _save_cached(base, arrays)
    return arrays


def make_tf_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = False,
                    seed: int = 0) -> tf.data.Dataset:
    """Batches of (float32 0-255 pixels, int32 labels) from arrays decoded once by load_arrays.

    Not `image_dataset_from_directory`: it would decode with TensorFlow (no robust error handling,
    no DICOM/16-bit handling), could not crop to the head, and splits by folder, not by the
    duplicate-aware groups of `make_splits`. The arrays stay uint8 in memory (4x smaller) and are
    cast per batch; models scale pixels themselves.
    """
    import tensorflow as tf

    if len(x) != len(y):
        raise DatasetError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if batch_size < 1:
        raise DatasetError(f"batch_size must be >= 1, got {batch_size}")
    y = np.asarray(y)
    # Class indices stay integers; one-hot targets must stay float: Keras applies label
    # smoothing before casting, so integer one-hot rows would be smoothed to all zeros.
    y = y.astype(np.int32) if y.ndim == 1 else y.astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(max(1, len(x)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

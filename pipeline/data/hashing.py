"""File hashes: SHA-1 of the bytes, a perceptual hash of the pixels, and the dataset fingerprint.

Exact duplicates share the SHA-1 of their bytes. Near duplicates are found with a perceptual hash:
``imagehash.phash`` with ``hash_size=16`` (a 256-bit DCT hash) of the decoded image in grayscale,
pre-shrunk to 128×128 by area averaging (for speed; the hash itself works at 64×64). A 64-bit
pHash already joined unrelated sagittal slices at 4 of 64 bits, hence the larger hash. How close
two hashes must be to count as copies is `duplicates.NEAR_DUPLICATE_THRESHOLD`.

Every file is read and decoded once per process: `hash_files` keeps what it learnt about a file in
a cache keyed by (path, size, mtime), which `audit`, `make_splits` and `fingerprint` share.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import images
from pipeline.data.discovery import Dataset, ImageRecord
from pipeline.names import Progress

PHASH_SIZE = 16  # imagehash hash_size: 16×16 = 256 bits
PHASH_BITS = PHASH_SIZE * PHASH_SIZE
WORKERS = 2  # the machines have 2 cores; Pillow and OpenCV release the GIL while decoding


@dataclass(frozen=True)
class HashInfo:
    """What one decode of a file tells: content hash, perceptual hash, size and mode, or error."""

    sha1: str
    size_bytes: int
    phash: bytes | None = None  # PHASH_BITS / 8 bytes; None when unreadable
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None
    pixels: str | None = None  # `pixel_digest` of the decoded image; None when unreadable


# Per-process cache keyed by (absolute path, size, mtime_ns): audit, make_splits and fingerprint in
# one process decode each file once. A changed file has a new size or mtime and is hashed again.
_HASH_CACHE: dict[tuple[str, int, int], HashInfo] = {}
_CACHE_LOCK = threading.Lock()


def stat_key(path: Path) -> tuple[str, int, int] | None:
    """(path, size, mtime_ns) of a file, or None when it cannot be stat'ed: a cache key."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], desc: str,
                 progress: Progress | None, workers: int = WORKERS) -> list[Any]:
    """[fn(item) for item in items] on a thread pool, in order, reporting about 200 steps."""
    total = len(items)
    out: list[Any] = []
    if progress:
        progress(desc, 0, total)
    if total == 0:
        return out
    step = max(1, total // 200)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, result in enumerate(pool.map(fn, items), 1):
            out.append(result)
            if progress and (i % step == 0 or i == total):
                progress(desc, i, total)
    return out


def pixel_digest(img: np.ndarray) -> str:
    """A digest of a decoded image's pixels (shape and bytes): equal for the same file, or any
    file that decodes to the same pixels, and for nothing else (unlike the pHash, which a
    shrunk or recoloured copy keeps)."""
    arr = np.ascontiguousarray(img)
    h = hashlib.sha1(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:20]


def perceptual_hash(img: np.ndarray) -> bytes:
    """256-bit pHash of an RGB uint8 image (see the module docstring), as 32 bytes."""
    import cv2
    import imagehash
    from PIL import Image

    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    side = PHASH_SIZE * 8
    if gray.shape[0] > side or gray.shape[1] > side:
        gray = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)
    bits = imagehash.phash(Image.fromarray(gray), hash_size=PHASH_SIZE).hash
    return np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes()


def _decoded_info(sha1: str, data: bytes, arr: np.ndarray, meta: dict[str, Any]) -> HashInfo:
    return HashInfo(sha1=sha1, size_bytes=len(data), phash=perceptual_hash(arr),
                    width=meta["width"], height=meta["height"], mode=meta["mode"],
                    format=meta["format"], pixels=pixel_digest(arr))


def remember(path: Path, data: bytes, arr: np.ndarray, meta: dict[str, Any]) -> HashInfo:
    """The `HashInfo` of a file a caller has read (`data`) and decoded (`images.
    decode_image_info`: `arr`, `meta`), kept in the cache as `hash_files` would keep it: a
    caller that decodes every file anyway (`evaluate`'s one pass) saves `hash_files` a second
    decode of each."""
    info = _decoded_info(hashlib.sha1(data).hexdigest(), data, arr, meta)
    key = stat_key(Path(path))
    if key is not None:
        with _CACHE_LOCK:
            _HASH_CACHE[key] = info
    return info


def _hash_one(path: Path) -> HashInfo:
    key = stat_key(path)
    if key is not None:
        with _CACHE_LOCK:
            hit = _HASH_CACHE.get(key)
        if hit is not None:
            return hit
    try:
        data = images.read_file(path, path.name)  # regular files only: a FIFO would block
    except images.ImageError as exc:
        return HashInfo(sha1="", size_bytes=0, error=str(exc))
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        arr, meta = images.decode_image_info(data, path.name)
        info = _decoded_info(sha1, data, arr, meta)
    except images.ImageError as exc:
        info = HashInfo(sha1=sha1, size_bytes=len(data), error=str(exc))
    except Exception as exc:  # never crash an audit on one file
        info = HashInfo(sha1=sha1, size_bytes=len(data),
                        error=f"{path.name}: {type(exc).__name__}: {exc}")
    if key is not None:
        with _CACHE_LOCK:
            _HASH_CACHE[key] = info
    return info


def hash_files(records: Sequence[ImageRecord], progress: Progress | None = None
               ) -> dict[str, HashInfo]:
    """{rel: HashInfo} for every record: SHA-1, pHash, size, mode, or the decode error."""
    infos = parallel_map(lambda r: _hash_one(Path(r.path)), list(records), "hashing images",
                         progress)
    return {r.rel: info for r, info in zip(records, infos, strict=True)}


def fingerprint(ds: Dataset, infos: dict[str, HashInfo] | None = None) -> str:
    """sha256 over the sorted (rel, label, size, SHA-1 of content) of every file.

    Changes when a file is added, removed, relabelled or its content changes. Reuses the SHA-1s of
    an audit or split in the same process; otherwise it only reads and hashes bytes (no decoding).
    """
    h = hashlib.sha256()
    for rec in sorted(ds.records, key=lambda r: r.rel):
        info = (infos or {}).get(rec.rel)
        if info is None:
            key = stat_key(Path(rec.path))
            with _CACHE_LOCK:
                info = _HASH_CACHE.get(key) if key else None
        if info is not None and info.sha1:
            sha1, size = info.sha1, info.size_bytes
        else:
            try:
                data = images.read_file(rec.path)
                sha1, size = hashlib.sha1(data).hexdigest(), len(data)
            except images.ImageError:
                sha1, size = "missing", -1
        h.update(f"{rec.rel}\t{rec.label}\t{size}\t{sha1}\n".encode())
    return h.hexdigest()

"""Dataset discovery, audit (corrupt files, exact and near duplicates), splits and input pipeline.

Layouts found by `discover` (folder names matched case- and separator-insensitively):

- ``sartaj``: ``Training/`` and ``Testing/`` holding ``glioma_tumor``, ``meningioma_tumor``,
  ``no_tumor``, ``pituitary_tumor`` (Bhuvaji et al., the Kaggle "Brain Tumor Classification").
- ``nickparvar``: ``Training/`` and ``Testing/`` holding ``glioma``, ``meningioma``, ``notumor``,
  ``pituitary`` (Nickparvar's "Brain Tumor MRI Dataset").
- ``flat``: class folders directly under the root, no split.
- ``binary``: ``yes/`` (tumour) and ``no/`` (no tumour), with or without split folders.

Duplicates. Exact duplicates share the SHA-1 of their bytes. Near duplicates are found with a
perceptual hash: ``imagehash.phash`` with ``hash_size=16`` (a 256-bit DCT hash) of the decoded
image in grayscale, pre-shrunk to 128×128 by area averaging (for speed; the hash itself works at
64×64). Two images are near duplicates when their hashes differ in at most
``NEAR_DUPLICATE_THRESHOLD`` = 28 of 256 bits (11 %). On the Sartaj data this joins re-encoded or
resized copies and neighbouring slices of the same scan, while no pair from different classes is
joined below 40 bits except the genuine cross-class copies; a 64-bit pHash already joined
unrelated sagittal slices at 4 of 64 bits, hence the larger hash. Duplicate groups are the
connected components (union-find) of exact and near pairs; the splits keep each group in one split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import images
from pipeline.names import IMAGE_EXTS, Progress

if TYPE_CHECKING:  # heavy imports stay lazy: `audit` must not pay for TensorFlow
    import tensorflow as tf


CANONICAL: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")
BINARY: tuple[str, ...] = ("no_tumor", "tumor")
NEAR_DUPLICATE_THRESHOLD = 28  # Hamming distance out of PHASH_BITS, see the module docstring
PHASH_SIZE = 16  # imagehash hash_size: 16×16 = 256 bits
PHASH_BITS = PHASH_SIZE * PHASH_SIZE
NEAR_DUPLICATE_METHOD = (
    f"pHash (imagehash.phash, hash_size={PHASH_SIZE}: {PHASH_BITS}-bit DCT hash of the grayscale "
    f"image); near duplicates differ in <= {NEAR_DUPLICATE_THRESHOLD} of {PHASH_BITS} bits; "
    "groups are connected components of exact (SHA-1) and near pairs"
)
SPLIT_NAMES = ("train", "val", "test")
IGNORED_ROOT_FOLDERS = {"masks"}  # the synthetic generator writes ground-truth masks there
WORKERS = 2  # the machines have 2 cores; Pillow and OpenCV release the GIL while decoding
_ARRAY_CACHE_VERSION = 1


class DatasetError(ValueError):
    """A data folder that cannot be used; the message says what was found and what was expected."""


# ----------------------------------------------------------------------------- labels and layout

_SEP = re.compile(r"[\s_\-.]+")
_TUMOR_SUFFIX = re.compile(r"(tumou?rs?|tumou?r)$")
# "glioma_tumor", "no_tumor" (Sartaj) vs "notumor" (Nickparvar)
_SARTAJ_NAME = re.compile(r"[\s_\-.]tumou?rs?$")
_FOUR_CLASS = {
    "glioma": "glioma", "gliomas": "glioma",
    "meningioma": "meningioma", "meningiomas": "meningioma",
    "pituitary": "pituitary", "pituitaryadenoma": "pituitary",
    "no": "no_tumor", "notumor": "no_tumor", "notumour": "no_tumor", "none": "no_tumor",
    "normal": "no_tumor", "healthy": "no_tumor",
}
_SPLITS = {
    "training": "train", "train": "train", "trainingset": "train", "trainset": "train",
    "testing": "test", "test": "test", "testingset": "test", "testset": "test",
    "validation": "val", "val": "val", "valid": "val",
}


def _norm(name: str) -> str:
    return _SEP.sub("", name.strip().lower())


def canonical_label(name: str, binary: bool = False) -> str | None:
    """Map a folder name to a canonical label, or None when it is not a class folder.

    Case, spaces, `_`, `-` and `.` are ignored, and a trailing "tumor"/"tumour" is dropped:
    "Glioma_Tumor", "glioma-tumour" -> glioma; "notumor", "No Tumor" -> no_tumor. "yes" and "tumor"
    mean tumour only in a binary dataset (binary=True), where every tumour type maps to "tumor".
    """
    key = _norm(name)
    if not key:
        return None
    if key in ("yes", "tumor", "tumour", "tumors", "tumours"):
        return "tumor" if binary else None
    stem = _TUMOR_SUFFIX.sub("", key) or key
    label = _FOUR_CLASS.get(key) or _FOUR_CLASS.get(stem)
    if label is None:
        return None
    if binary:
        return "no_tumor" if label == "no_tumor" else "tumor"
    return label


def canonical_split(name: str) -> str | None:
    """"Training"/"train" -> "train", "Testing"/"test" -> "test", "Validation" -> "val"."""
    return _SPLITS.get(_norm(name))


@dataclass(frozen=True)
class ImageRecord:
    path: Path  # absolute
    rel: str  # posix path relative to the dataset root
    label: str  # canonical label
    split: str | None  # "train"/"test" (or "val") from the dataset's own folders; None if flat


@dataclass
class Dataset:
    root: Path
    layout: str  # "sartaj" | "nickparvar" | "flat" | "binary"
    classes: list[str]  # sorted canonical labels present
    records: list[ImageRecord]  # sorted by rel
    binary: bool
    ignored: list[str] = field(default_factory=list)  # folders that did not map to a class

    def counts(self) -> dict[str, dict[str, int]]:
        """{split or "all": {class: n}} with every class present in every split."""
        out: dict[str, dict[str, int]] = {}
        for rec in self.records:
            key = rec.split or "all"
            out.setdefault(key, dict.fromkeys(self.classes, 0))[rec.label] += 1
        order = {"train": 0, "val": 1, "test": 2, "all": 3}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _image_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTS:
                out.append(Path(dirpath) / name)
    return out


def _class_dirs(folder: Path, binary: bool, skip: frozenset[str] = frozenset()
                ) -> tuple[list[tuple[Path, str]], list[str]]:
    mapped, ignored = [], []
    for d in _visible_dirs(folder):
        if d.name in skip:
            continue
        label = canonical_label(d.name, binary=binary)
        (mapped.append((d, label)) if label else ignored.append(d.name))
    return mapped, ignored


def _is_binary(names: Iterable[str]) -> bool:
    names = list(names)
    has_yes = any(canonical_label(n, True) == "tumor" and canonical_label(n) is None for n in names)
    has_class = any(canonical_label(n) not in (None, "no_tumor") for n in names)
    return has_yes and not has_class


def _describe(root: Path) -> str:
    dirs = [d.name for d in _visible_dirs(root) if d.name not in IGNORED_ROOT_FOLDERS]
    files = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    parts = []
    if dirs:
        shown = ", ".join(f"{d}/" for d in dirs[:12]) + (" …" if len(dirs) > 12 else "")
        parts.append(f"folders {shown}")
    if files:
        parts.append(f"{len(files)} file(s) such as {files[0]}")
    return "; ".join(parts) or "nothing"


def _find_root(root: Path, depth: int = 0) -> Path:
    """Descend through single wrapper folders (e.g. an unpacked archive/) to the dataset."""
    dirs = [d for d in _visible_dirs(root) if d.name not in IGNORED_ROOT_FOLDERS]
    names = [d.name for d in dirs]
    if any(canonical_split(n) or canonical_label(n, binary=True) for n in names):
        return root
    if len(dirs) == 1 and depth < 2:
        inner = _find_root(dirs[0], depth + 1)
        if inner != dirs[0] or any(canonical_split(d.name) or canonical_label(d.name, True)
                                   for d in _visible_dirs(dirs[0])):
            return inner
    return root


def discover(root: str | Path) -> Dataset:
    """Find the class folders under `root` (see the module docstring for the layouts)."""
    given = Path(root).expanduser()
    if not given.exists():
        raise DatasetError(f"data folder {given} does not exist")
    if not given.is_dir():
        raise DatasetError(f"data folder {given} is not a folder")
    root = _find_root(given.resolve())
    top = [d for d in _visible_dirs(root) if d.name not in IGNORED_ROOT_FOLDERS]
    if not top and not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DatasetError(f"data folder {given} is empty")
    split_dirs = [(d, canonical_split(d.name)) for d in top if canonical_split(d.name)]
    ignored: list[str] = []
    if split_dirs:
        inner_names = [c.name for d, _ in split_dirs for c in _visible_dirs(d)]
        binary = _is_binary(inner_names)
        groups = []
        for d, split in split_dirs:
            mapped, ign = _class_dirs(d, binary)
            ignored += [f"{d.name}/{n}" for n in ign]
            groups += [(c, label, split) for c, label in mapped]
        ignored += [d.name for d in top if not canonical_split(d.name)]
        if binary:
            layout = "binary"
        elif any(_SARTAJ_NAME.search(c.name.lower()) for c, _, _ in groups):
            layout = "sartaj"
        else:
            layout = "nickparvar"
    else:
        binary = _is_binary(d.name for d in top)
        mapped, ignored = _class_dirs(root, binary, frozenset(IGNORED_ROOT_FOLDERS))
        groups = [(c, label, None) for c, label in mapped]
        layout = "binary" if binary else "flat"
    if not groups:
        raise DatasetError(
            f"no class folders found in {given}: found {_describe(root)}. Expected class folders "
            "named like glioma, meningioma, pituitary, no_tumor (optionally inside Training/ and "
            "Testing/), or yes/ and no/"
        )
    records = []
    for folder, label, split in groups:
        for path in _image_files(folder):
            rel = path.relative_to(root).as_posix()
            records.append(ImageRecord(path=path, rel=rel, label=label, split=split))
    if not records:
        found = ", ".join(sorted({c.relative_to(root).as_posix() + "/" for c, _, _ in groups}))
        raise DatasetError(
            f"the class folders in {given} ({found}) hold no images; accepted extensions: "
            f"{', '.join(sorted(IMAGE_EXTS))}"
        )
    records.sort(key=lambda r: r.rel)
    classes = sorted({r.label for r in records})
    return Dataset(root=root, layout=layout, classes=classes, records=records, binary=binary,
                   ignored=sorted(ignored))


# ----------------------------------------------------------------------------- hashing


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


# Per-process cache keyed by (absolute path, size, mtime_ns): audit, make_splits and fingerprint in
# one process decode each file once. A changed file has a new size or mtime and is hashed again.
_HASH_CACHE: dict[tuple[str, int, int], HashInfo] = {}
_CACHE_LOCK = threading.Lock()


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns)


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


def _hash_one(path: Path) -> HashInfo:
    key = _stat_key(path)
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
        info = HashInfo(sha1=sha1, size_bytes=len(data), phash=perceptual_hash(arr),
                        width=meta["width"], height=meta["height"], mode=meta["mode"],
                        format=meta["format"])
    except images.ImageError as exc:
        info = HashInfo(sha1=sha1, size_bytes=len(data), error=str(exc))
    except Exception as exc:  # never crash an audit on one file
        info = HashInfo(sha1=sha1, size_bytes=len(data),
                        error=f"{path.name}: {type(exc).__name__}: {exc}")
    if key is not None:
        with _CACHE_LOCK:
            _HASH_CACHE[key] = info
    return info


def _parallel(fn: Callable[[Any], Any], items: Sequence[Any], desc: str,
              progress: Progress | None, workers: int = WORKERS) -> list[Any]:
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


def hash_files(records: Sequence[ImageRecord], progress: Progress | None = None
               ) -> dict[str, HashInfo]:
    """{rel: HashInfo} for every record: SHA-1, pHash, size, mode, or the decode error."""
    infos = _parallel(lambda r: _hash_one(Path(r.path)), list(records), "hashing images", progress)
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
            key = _stat_key(Path(rec.path))
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


# ----------------------------------------------------------------------------- duplicate groups


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x)
    b = x.view(np.uint8).reshape(*x.shape, 8)  # pragma: no cover - numpy 1.x fallback
    return np.unpackbits(b, axis=-1).sum(axis=-1, dtype=np.uint8)


def hamming_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between rows of two (n, words) uint64 hash arrays."""
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.uint16)
    for k in range(a.shape[1]):
        out += _popcount64(a[:, k, None] ^ b[None, :, k])
    return out


def near_pairs(hashes: Sequence[bytes], threshold: int = NEAR_DUPLICATE_THRESHOLD,
               block: int = 512) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance) with i < j and pHash distance <= threshold.

    Vectorised O(n²) popcount over 64-bit words in row blocks: about a second for 3264 images and
    bounded memory for larger sets.
    """
    n = len(hashes)
    if n < 2:
        return []
    mat = np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(n, -1)
    pairs = []
    for start in range(0, n, block):
        d = hamming_matrix(mat[start:start + block], mat)
        ii, jj = np.nonzero(d <= threshold)
        ii = ii + start
        keep = jj > ii
        pairs += [(int(i), int(j), int(d[i - start, j]))
                  for i, j in zip(ii[keep], jj[keep], strict=True)]
    return pairs


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


@dataclass
class _Groups:
    """Duplicate structure over a list of readable records (indices into that list)."""

    exact: list[list[int]]  # SHA-1 groups of size >= 2
    components: list[list[int]]  # exact + near connected components, singletons included
    component_of: list[int]  # record index -> component index
    pairs: list[tuple[int, int, int]]  # near pairs (i, j, distance)


def _group(records: Sequence[ImageRecord], infos: dict[str, HashInfo], near: bool = True,
           threshold: int = NEAR_DUPLICATE_THRESHOLD) -> _Groups:
    n = len(records)
    uf = _UnionFind(n)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_sha[infos[rec.rel].sha1].append(i)
    exact = [idx for idx in by_sha.values() if len(idx) > 1]
    for idx in exact:
        for j in idx[1:]:
            uf.union(idx[0], j)
    pairs: list[tuple[int, int, int]] = []
    if near:
        hashes = [infos[r.rel].phash or b"\0" * (PHASH_BITS // 8) for r in records]
        pairs = near_pairs(hashes, threshold)
        for i, j, _ in pairs:
            uf.union(i, j)
    comp: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        comp[uf.find(i)].append(i)
    components = sorted(comp.values(), key=lambda c: c[0])
    component_of = [0] * n
    for ci, members in enumerate(components):
        for i in members:
            component_of[i] = ci
    return _Groups(exact=sorted(exact, key=lambda g: (-len(g), g[0])), components=components,
                   component_of=component_of, pairs=pairs)


def duplicate_components(records: Sequence[ImageRecord],
                         infos: dict[str, HashInfo] | None = None, near: bool = True) -> list[int]:
    """Duplicate-group id per record (same id = exact or near copies, transitively).

    The grouping `make_splits` uses with dedupe; for cross-validation folds and overlap checks.
    Pass readable records (unreadable ones have no pHash and only group by identical bytes).
    """
    infos = infos if infos is not None else hash_files(records)
    return _group(records, infos, near=near).component_of


# ----------------------------------------------------------------------------- audit


def audit(ds: Dataset, progress: Progress | None = None, examples: int = 5) -> dict[str, Any]:
    """Counts, sizes, modes, unreadable files, exact and near duplicates, leakage, conflicts.

    Keys: `root`, `layout`, `binary`, `classes`, `n_images`, `counts` ({split: {class: n}}),
    `unreadable` (rel paths), `unreadable_reasons` ({rel: reason}), `sizes` (top sizes),
    `n_distinct_sizes`, `modes`, `formats`, `exact_duplicate_groups`, `exact_duplicate_extra_files`
    (copies beyond the first of each group), `cross_split_duplicates` (test-split images with an
    exact copy in the training split), `cross_split_duplicate_groups` (exact groups spanning
    splits), `cross_class_duplicates` (exact groups spanning classes: label conflicts),
    `near_duplicate_groups` (exact+near components holding at least two different files),
    `duplicate_groups` (all components of size >= 2), `images_in_duplicate_groups`,
    `largest_duplicate_group`, `cross_split_near_duplicates` (test images with an exact or near
    copy in training), `cross_class_near_duplicate_groups`, `near_duplicate_method`,
    `near_duplicate_threshold`, `examples` and `seconds`. Unreadable files are listed, never fatal.
    """
    t0 = time.perf_counter()
    infos = hash_files(ds.records, progress)
    bad = [r for r in ds.records if infos[r.rel].error]
    good = [r for r in ds.records if not infos[r.rel].error]
    groups = _group(good, infos)
    if progress:
        progress("comparing hashes", 1, 1)

    sizes = Counter(f"{infos[r.rel].width}x{infos[r.rel].height}" for r in good)
    modes = Counter(infos[r.rel].mode or "?" for r in good)
    formats = Counter(infos[r.rel].format or "?" for r in good)

    def rels(idx: Iterable[int]) -> list[str]:
        return [good[i].rel for i in idx]

    def spans(idx: list[int], attr: str) -> bool:
        return len({getattr(good[i], attr) for i in idx}) > 1

    exact = groups.exact
    xsplit_groups = [g for g in exact if len({good[i].split for i in g} - {None}) > 1]
    xclass_groups = [g for g in exact if spans(g, "label")]
    sha_splits: dict[str, set[str | None]] = defaultdict(set)
    for r in good:
        sha_splits[infos[r.rel].sha1].add(r.split)
    cross_split = sum(1 for r in good if r.split == "test"
                      and "train" in sha_splits[infos[r.rel].sha1])

    multi = [c for c in groups.components if len(c) > 1]
    near_groups = [c for c in multi if len({infos[good[i].rel].sha1 for i in c}) > 1]
    comp_splits = [{good[i].split for i in c} for c in groups.components]
    cross_split_near = sum(1 for i, r in enumerate(good) if r.split == "test"
                           and "train" in comp_splits[groups.component_of[i]])
    xclass_near = [c for c in multi if spans(c, "label")]

    def show(gs: list[list[int]], attr: str | None = None) -> list[list[str]]:
        """Largest groups first; members ordered so that different splits/classes show first."""
        out = []
        for g in sorted(gs, key=lambda g: (-len(g), g[0]))[:examples]:
            if attr:
                seen: set[Any] = set()
                first = [i for i in g if not (getattr(good[i], attr) in seen
                                              or seen.add(getattr(good[i], attr)))]
                g = first + [i for i in g if i not in first]
            out.append(rels(g)[:8])
        return out

    closest = sorted(((d, i, j) for i, j, d in groups.pairs
                      if infos[good[i].rel].sha1 != infos[good[j].rel].sha1))
    return {
        "root": str(ds.root),
        "layout": ds.layout,
        "binary": ds.binary,
        "classes": list(ds.classes),
        "n_images": len(ds.records),
        "n_readable": len(good),
        "counts": ds.counts(),
        "ignored_folders": list(ds.ignored),
        "unreadable": [r.rel for r in bad],
        "unreadable_reasons": {r.rel: infos[r.rel].error for r in bad},
        "sizes": [{"size": s, "count": n} for s, n in sizes.most_common(10)],
        "n_distinct_sizes": len(sizes),
        "modes": dict(modes.most_common()),
        "formats": dict(formats.most_common()),
        "exact_duplicate_groups": len(exact),
        "exact_duplicate_extra_files": sum(len(g) - 1 for g in exact),
        "cross_split_duplicates": cross_split,
        "cross_split_duplicate_groups": len(xsplit_groups),
        "cross_class_duplicates": len(xclass_groups),
        "near_duplicate_groups": len(near_groups),
        "near_duplicate_pairs": len(closest),
        "duplicate_groups": len(multi),
        "images_in_duplicate_groups": sum(len(c) for c in multi),
        "largest_duplicate_group": max((len(c) for c in multi), default=0),
        "cross_split_near_duplicates": cross_split_near,
        "cross_class_near_duplicate_groups": len(xclass_near),
        "near_duplicate_method": NEAR_DUPLICATE_METHOD,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
        "examples": {
            "exact": show(exact),
            "cross_split": show(xsplit_groups, "split"),
            "cross_class": show(xclass_near, "label"),
            "near": show(near_groups),
            "near_pairs": [{"a": good[i].rel, "b": good[j].rel, "distance": d}
                           for d, i, j in closest[:examples]],
        },
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ----------------------------------------------------------------------------- splits


@dataclass
class Splits:
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    info: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        labels = sorted({r.label for r in (*self.train, *self.val, *self.test)})
        out = {}
        for name in SPLIT_NAMES:
            c = dict.fromkeys(labels, 0)
            for r in getattr(self, name):
                c[r.label] += 1
            out[name] = c
        return out


def _seeded_key(seed: int, rel: str) -> str:
    return hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest()


def _assign_groups(groups: list[list[int]], labels: list[str], classes: list[str],
                   fractions: dict[str, float], rng: np.random.Generator) -> dict[int, str]:
    """Greedy stratified group assignment (own code, in the spirit of StratifiedGroupKFold).

    StratifiedGroupKFold only gives 1/k folds; this hits arbitrary fractions. Groups go largest
    first (ties in seeded random order) to the split whose per-class quota is least filled,
    weighted by the group's class make-up; small groups and singletons fill the remaining quotas
    almost exactly. Returns {record index: split}.
    """
    cidx = {c: k for k, c in enumerate(classes)}
    names = [s for s, f in fractions.items() if f > 0]
    totals = np.zeros(len(classes))
    vecs = []
    for g in groups:
        v = np.zeros(len(classes))
        for i in g:
            v[cidx[labels[i]]] += 1
        vecs.append(v)
        totals += v
    target = np.array([[fractions[s] * t for t in totals] for s in names])
    current = np.zeros_like(target)
    priority = rng.permutation(len(groups))
    order = sorted(range(len(groups)), key=lambda k: (-len(groups[k]), priority[k]))
    out: dict[int, str] = {}
    for k in order:
        v = vecs[k]
        deficit = (target - current) / np.maximum(target, 1e-9)
        score = (deficit * v).sum(axis=1) / v.sum()
        score = score + rng.random(len(names)) * 1e-9  # random tie-break
        s = int(np.argmax(score))
        current[s] += v
        for i in groups[k]:
            out[i] = names[s]
    return out


def _cap(records: list[ImageRecord], max_per_class: int, seed: int) -> list[ImageRecord]:
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        by_class[r.label].append(r)
    kept = []
    for label in sorted(by_class):
        kept += sorted(by_class[label], key=lambda r: _seeded_key(seed, r.rel))[:max_per_class]
    return sorted(kept, key=lambda r: r.rel)


def make_splits(ds: Dataset, seed: int = 42, val_fraction: float = 0.15,
                test_fraction: float = 0.15, dedupe: bool = True, official_test: bool = False,
                max_per_class: int | None = None, progress: Progress | None = None) -> Splits:
    """Deterministic stratified train/val/test split of the readable images.

    dedupe: every exact/near duplicate group (see the module docstring) lies in one split, so no
    test image has a copy in train or val. official_test: test = the dataset's own Testing/ images;
    `info["official_test_leaking"]` counts those with an exact or near copy in the training pool,
    and with dedupe those copies are dropped from train/val (`dropped_duplicates_of_test`); val is
    then `val_fraction` of what remains. max_per_class: keep at most that many images per class
    (a seeded choice) before splitting, for smoke runs. Unreadable files are excluded and counted.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise DatasetError("val_fraction and test_fraction must lie in [0, 1)")
    if not official_test and val_fraction + test_fraction >= 1:
        raise DatasetError(f"val_fraction + test_fraction must be < 1, got "
                           f"{val_fraction} + {test_fraction}")
    if max_per_class is not None and max_per_class < 1:
        raise DatasetError(f"max_per_class must be >= 1, got {max_per_class}")
    infos = hash_files(ds.records, progress)
    unreadable = [r.rel for r in ds.records if infos[r.rel].error]
    records = [r for r in ds.records if not infos[r.rel].error]
    n_readable = len(records)
    if max_per_class is not None:
        records = _cap(records, max_per_class, seed)
    if official_test and not any(r.split == "test" for r in records):
        raise DatasetError(f"official_test needs a Testing/ folder; {ds.root} (layout "
                           f"{ds.layout}) has none")
    rng = np.random.default_rng(seed)
    labels = [r.label for r in records]
    groups = _group(records, infos, near=True)  # near pairs also measure official-test leakage
    comps = groups.components if dedupe else [[i] for i in range(len(records))]
    info: dict[str, Any] = {
        "strategy": ("official-test" if official_test else "stratified")
        + ("+dedup" if dedupe else ""),
        "grouping": "own greedy stratified group assignment (largest groups first)",
        "seed": seed, "val_fraction": val_fraction,
        "test_fraction": None if official_test else test_fraction,
        "dedupe": dedupe, "max_per_class": max_per_class,
        "n_images": len(records),
        "unreadable_excluded": len(unreadable), "unreadable": unreadable[:20],
        "capped_out": n_readable - len(records),
        "duplicate_groups": sum(1 for c in groups.components if len(c) > 1),
        "largest_group": max((len(c) for c in groups.components), default=0),
        "near_duplicate_method": NEAR_DUPLICATE_METHOD,
        "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
    }
    assigned: dict[int, str]
    if official_test:
        test_idx = {i for i, r in enumerate(records) if r.split == "test"}
        comp_has_test = {groups.component_of[i] for i in test_idx}
        comp_has_pool = {groups.component_of[i] for i in range(len(records)) if i not in test_idx}
        pool_sha = {infos[records[i].rel].sha1 for i in range(len(records)) if i not in test_idx}
        leaking = sum(1 for i in test_idx if groups.component_of[i] in comp_has_pool)
        leaking_exact = sum(1 for i in test_idx if infos[records[i].rel].sha1 in pool_sha)
        dropped = [i for i in range(len(records)) if i not in test_idx
                   and groups.component_of[i] in comp_has_test] if dedupe else []
        drop = set(dropped)
        pool_comps = [[i for i in c if i not in test_idx and i not in drop] for c in comps]
        pool_comps = [c for c in pool_comps if c]
        assigned = _assign_groups(pool_comps, labels, ds.classes,
                                  {"train": 1 - val_fraction, "val": val_fraction}, rng)
        assigned.update(dict.fromkeys(test_idx, "test"))
        info["official_test_leaking"] = leaking
        info["official_test"] = {"n": len(test_idx), "leaking": leaking,
                                 "leaking_exact": leaking_exact,
                                 "dropped_duplicates_of_test": len(dropped)}
        info["dropped_duplicates_of_test"] = len(dropped)
    else:
        assigned = _assign_groups(comps, labels, ds.classes,
                                  {"train": 1 - val_fraction - test_fraction,
                                   "val": val_fraction, "test": test_fraction}, rng)
    parts: dict[str, list[ImageRecord]] = {s: [] for s in SPLIT_NAMES}
    for i, r in enumerate(records):
        if i in assigned:
            parts[assigned[i]].append(r)
    splits = Splits(train=parts["train"], val=parts["val"], test=parts["test"], info=info)
    info.update({s: len(parts[s]) for s in SPLIT_NAMES})
    info["counts"] = splits.counts()
    return splits


def splits_to_json(splits: Splits, root: str | Path) -> dict[str, Any]:
    """The `splits.json` object: {"train"|"val"|"test": [{"path": rel, "label"}], "info": {...}}.

    With an official test set, "official_test" lists its images with a `leaking` flag.
    """
    root = Path(root).resolve()

    def rel(r: ImageRecord) -> str:
        try:
            return Path(r.path).resolve().relative_to(root).as_posix()
        except ValueError:
            return r.rel

    out: dict[str, Any] = {s: [{"path": rel(r), "label": r.label} for r in getattr(splits, s)]
                           for s in SPLIT_NAMES}
    out["info"] = json.loads(json.dumps(splits.info, default=str))
    return out


def splits_from_json(obj: dict[str, Any], root: str | Path, check_exists: bool = True) -> Splits:
    """Rebuild Splits from `splits_to_json` output against the data folder `root`."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(s), list) for s in SPLIT_NAMES):
        raise DatasetError("splits.json must hold lists under 'train', 'val' and 'test'")
    root = Path(root).resolve()
    missing: list[str] = []
    parts: dict[str, list[ImageRecord]] = {}
    for s in SPLIT_NAMES:
        recs = []
        for item in obj[s]:
            try:
                rel, label = str(item["path"]), str(item["label"])
            except (TypeError, KeyError):
                raise DatasetError(f"splits.json: bad entry in {s!r}: {item!r}") from None
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts:
                raise DatasetError(f"splits.json: path {rel!r} must be relative to the data folder")
            path = root.joinpath(*pure.parts)
            if check_exists and not path.is_file():
                missing.append(rel)
            split = canonical_split(pure.parts[0]) if len(pure.parts) > 1 else None
            recs.append(ImageRecord(path=path, rel=pure.as_posix(), label=label, split=split))
        parts[s] = recs
    if missing:
        raise DatasetError(f"{len(missing)} image(s) of splits.json are missing under {root}, "
                           f"e.g. {', '.join(missing[:3])}")
    info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
    return Splits(train=parts["train"], val=parts["val"], test=parts["test"], info=dict(info))


# ----------------------------------------------------------------------------- arrays and tf.data


@dataclass
class LoadedArrays:
    x: np.ndarray  # (N, S, S, 3) uint8
    y: np.ndarray  # (N,) int32, index into classes
    records: list[ImageRecord]  # the ones loaded, in order
    failed: list[tuple[str, str]]  # (rel, reason) of files that could not be decoded


def _array_cache_key(records: Sequence[ImageRecord], size: int, crop: bool) -> str:
    h = hashlib.sha256(f"v{_ARRAY_CACHE_VERSION}|{size}|{int(crop)}\n".encode())
    for r in records:
        key = _stat_key(Path(r.path))
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
            return images.prepare_image(images.read_image(rec.path), size, crop=crop)
        except images.ImageError as exc:
            return str(exc)
        except Exception as exc:  # a bad file must not stop the loading of the others
            return f"{rec.rel}: {type(exc).__name__}: {exc}"

    x = np.empty((len(records), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    failed: list[tuple[str, str]] = []
    results = _parallel(work, records, "decoding images", progress)
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

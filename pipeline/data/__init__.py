"""Data layer: discovery, audit, duplicate-aware splits, decoded arrays and `tf.data` batches.

One module per stage, in the order a run uses them:

- `discovery`: folder layouts, canonical labels, `ImageRecord`/`Dataset`, `discover`.
- `hashing`: SHA-1 and perceptual hash of every file (cached per process), `fingerprint`.
- `duplicates`: near pairs by Hamming distance and the exact+near duplicate groups.
- `auditing`: `audit`, the report of `pipeline audit`.
- `splits`: `make_splits` (every duplicate group in one split) and splits.json.
- `arrays`: `load_arrays` (decode once, optional disk cache) and `make_tf_dataset`.

Callers import from the package (`from pipeline import data`; `data.load_arrays(...)`), so a
test can monkeypatch `data.load_arrays` and every caller sees it. Nothing here imports
TensorFlow at import time.
"""

from pipeline.data.arrays import LoadedArrays, load_arrays, make_tf_dataset
from pipeline.data.auditing import audit
from pipeline.data.discovery import (
    BINARY,
    CANONICAL,
    IGNORED_ROOT_FOLDERS,
    Dataset,
    DatasetError,
    ImageRecord,
    canonical_label,
    canonical_split,
    class_folders_note,
    discover,
    ignored_note,
    layout_name,
    patient_note,
    untrainable,
)
from pipeline.data.duplicates import (
    NEAR_DUPLICATE_METHOD,
    NEAR_DUPLICATE_THRESHOLD,
    DuplicateGroups,
    duplicate_components,
    group_duplicates,
    hamming_matrix,
    near_pairs,
)
from pipeline.data.hashing import (
    PHASH_BITS,
    PHASH_SIZE,
    WORKERS,
    HashInfo,
    fingerprint,
    hash_files,
    perceptual_hash,
)
from pipeline.data.splits import (
    SPLIT_NAMES,
    Splits,
    make_splits,
    split_gaps,
    splits_from_json,
    splits_to_json,
)

# The old private name: evaluate.cross_validate groups fold members with `data._group`.
_group = group_duplicates

__all__ = [
    "BINARY",
    "CANONICAL",
    "IGNORED_ROOT_FOLDERS",
    "NEAR_DUPLICATE_METHOD",
    "NEAR_DUPLICATE_THRESHOLD",
    "PHASH_BITS",
    "PHASH_SIZE",
    "SPLIT_NAMES",
    "WORKERS",
    "Dataset",
    "DatasetError",
    "DuplicateGroups",
    "HashInfo",
    "ImageRecord",
    "LoadedArrays",
    "Splits",
    "audit",
    "canonical_label",
    "canonical_split",
    "class_folders_note",
    "discover",
    "ignored_note",
    "layout_name",
    "duplicate_components",
    "fingerprint",
    "group_duplicates",
    "hamming_matrix",
    "hash_files",
    "load_arrays",
    "make_splits",
    "make_tf_dataset",
    "near_pairs",
    "patient_note",
    "perceptual_hash",
    "split_gaps",
    "splits_from_json",
    "splits_to_json",
    "untrainable",
]

"""The dataset the shipped runs were trained on, known by content: what was measured on it (its
CT slices, its 512x512 collection) is said only about runs trained on it, never about a run on
someone's own data (a review, 2026-12-06: a yes/no run's About page said "four labels" and "73
CT slices"). A run names its dataset by the manifest's `data.fingerprint` (`data.fingerprint`:
every file's path, label, size and SHA-1), the same for anyone who unpacks the same download.
Pure Python: the dashboard and the CLI import it without Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# brain-tumor-mri-sartaj (Bhuvaji et al.'s Kaggle "Brain Tumor Classification", 3264 images), as
# the shipped runs' manifests record it (artifacts/runs/*/manifest.json, measured 2026-12-06)
SARTAJ_FINGERPRINTS: frozenset[str] = frozenset({
    "9ddee60870b6d1a7945dc2a84118aeec1b00c9b7cf7b06a8358274b5a9892534",
})

# Said only for such a run: how many CT slices it holds (counted by eye, tests/data/ct_slices.txt)
SARTAJ_CT_SLICES = 73
# ... of which in its no-tumour folders (of their images): 60 of 500, 29 of `Testing/`'s 105
SARTAJ_NO_TUMOUR_CT = {"all": (60, 500), "Testing": (29, 105)}


def trained_on_sartaj(manifest: Mapping[str, Any] | None) -> bool:
    """Whether a run's manifest (or its "data" entry) names the Sartaj dataset by content."""
    m = manifest or {}
    data = m.get("data") if isinstance(m.get("data"), Mapping) else m
    return isinstance(data, Mapping) and data.get("fingerprint") in SARTAJ_FINGERPRINTS

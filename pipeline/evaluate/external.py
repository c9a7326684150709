"""External data folders: how their labels are scored against a run's classes, and whether they
hold copies of the run's training images. Also the package's error, `EvaluationError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.evaluate.metrics import NO_TUMOR


class EvaluationError(ValueError):
    """A run or data folder that cannot be evaluated; the message names what is wrong."""


BINARY_CLASSES = ["no_tumor", "tumor"]


@dataclass
class LabelPlan:
    """How a data folder's labels are scored against a run's classes.

    mode "direct": folder labels are run classes (images of other labels are skipped);
    "binary": a yes/no folder scored against a multi-class run, whose probabilities collapse to
    P(no_tumor) and P(tumour) = 1 - P(no_tumor); "tumour-types-as-tumor": a four-class folder
    scored against a binary run, every tumour type counting as "tumor".
    """

    mode: str
    class_names: list[str]  # the classes metrics are computed over
    mapping: dict[str, str]  # folder label -> evaluation label; labels not in it are skipped
    collapse: bool  # collapse the run's probabilities to [no_tumor, tumor]

    def skipped(self, folder_labels: Sequence[str]) -> list[str]:
        """Folder labels this plan does not score (their images are left out)."""
        return sorted(set(folder_labels) - set(self.mapping))


def map_external_labels(folder_labels: Sequence[str], run_classes: Sequence[str]) -> LabelPlan:
    """Decide how images labelled `folder_labels` are scored by a run with `run_classes`."""
    # sorted: the mapping's key order is part of the JSON written, so it must not vary by run
    folder, run = sorted(set(folder_labels)), list(run_classes)
    if not folder:
        raise EvaluationError("the data folder has no labelled images")
    if "tumor" in folder and set(folder) <= set(BINARY_CLASSES) and "tumor" not in run:
        if NO_TUMOR not in run:
            raise EvaluationError(
                f"a yes/no folder needs a run that knows {NO_TUMOR!r}; this run's classes are "
                f"{run}")
        return LabelPlan("binary", list(BINARY_CLASSES), {c: c for c in folder}, collapse=True)
    if sorted(run) == BINARY_CLASSES and set(folder) - set(BINARY_CLASSES):
        mapping = {c: (NO_TUMOR if c == NO_TUMOR else "tumor") for c in folder}
        return LabelPlan("tumour-types-as-tumor", run, mapping, collapse=False)
    mapping = {c: c for c in folder if c in run}
    if not mapping:
        raise EvaluationError(
            f"the data folder's classes {folder} do not overlap the run's classes {run}")
    return LabelPlan("direct", run, mapping, collapse=False)


def collapse_to_binary(probs: np.ndarray, class_names: Sequence[str]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Binary view of multi-class probabilities: ([P(no_tumor), P(tumour)], tumour call 0/1).

    The tumour call is the arg-max rule of `pipeline.evaluate.metrics` (predicted class is not
    no_tumor), so it matches `tumor_vs_no_tumor` of the same model on the same image.
    """
    nt = list(class_names).index(NO_TUMOR)
    p = np.asarray(probs, dtype=np.float64)
    p_no = p[:, nt]
    return np.stack([p_no, 1.0 - p_no], axis=1), (p.argmax(axis=1) != nt).astype(np.int64)


def _sha1(path: Path) -> str | None:
    """SHA-1 of a regular file's bytes; None for anything unreadable.

    images.read_file, not Path.read_bytes: a FIFO named scan.png in an external folder would
    block forever and /dev/zero never ends; read_file refuses non-regular files unread.
    """
    from pipeline.images import ImageError, read_file

    try:
        return hashlib.sha1(read_file(path)).hexdigest()
    except (ImageError, OSError):
        return None


def training_overlap(run: Any, records: Sequence[Any]) -> dict[str, Any]:
    """Images of `records` that are byte-identical to a train/val image of the run.

    Public datasets are often merged from each other (Nickparvar's includes Sartaj's), so an
    "external" folder can contain the very images a model was trained on, inflating its score.
    Only exact copies are found (SHA-1 of the file bytes: cheap, no decoding); re-encoded copies
    are not, so a count of 0 is a lower bound, not a guarantee.
    """
    root = run.data_dir
    try:
        splits = run.read_json(run_files.SPLITS)
    except Exception as exc:  # missing/damaged splits: report, never fail the evaluation
        return {"checked": False, "reason": f"splits.json unreadable: {exc}"}
    if root is None or not root.is_dir():
        return {"checked": False, "reason": f"the run's dataset folder {root} is not there"}
    seen: set[str] = set()
    for split in ("train", "val"):
        for item in splits.get(split, []):
            digest = _sha1(root.joinpath(*PurePosixPath(str(item["path"])).parts))
            if digest:
                seen.add(digest)
    hits = [r.rel for r in records if _sha1(Path(r.path)) in seen]
    return {"checked": True, "method": "SHA-1 of file bytes against the run's train+val images",
            "n_exact": len(hits), "examples": hits[:20]}

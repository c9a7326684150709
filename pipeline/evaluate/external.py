"""External data folders: how their labels are scored against a run's classes, and which of
their images the run has met (its own images or copies). Also the package's error,
`EvaluationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.evaluate.metrics import NO_TUMOR


class EvaluationError(ValueError):
    """A run or data folder that cannot be evaluated; the message names what is wrong."""


BINARY_CLASSES = ["no_tumor", "tumor"]
# How a folder's labels were scored (`LabelPlan.mode`), in the words evaluate's header uses: the
# bare mode ("direct") meant nothing to a student (a review, 2026-12-06)
MODE_WORDS = {"direct": "labels as the run's classes",
              "binary": "a yes/no folder: tumour against no tumour",
              "tumour-types-as-tumor": "every tumour type counted as tumour"}


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


def series_files(records: Sequence[Any]) -> list[Any]:
    """The records that are a series or part of one, left out of a folder's scores: a folder's
    label is not each slice's (`data.discovery.SERIES_NOTE`). A multi-frame DICOM or a TIFF
    stack (more than one slice, counted from its header as `predict` counts it,
    `series.expand_series`: the first slice is all a record is read as), and single-frame DICOM
    files of a series held as one file per slice (`series_slices`, as `SeriesSlice`s): a
    multi-frame file was left out while the same slices saved one per file were each scored
    with the folder's label (a review, 2026-12-06)."""
    from pipeline.series import Slice, expand_series

    multi = {s.path for s in expand_series([str(r.path) for r in records])
             if isinstance(s, Slice)}
    files = [r for r in records if str(r.path) in multi]
    return [*files, *series_slices([r for r in records if str(r.path) not in multi])]


@dataclass(frozen=True)
class SeriesSlice:
    """A single-frame DICOM file of a series whose other slices are files of the same folder's
    data (`series_slices`); `rel`, `path` and `label` are its record's."""

    record: Any  # data.discovery.ImageRecord
    uid: str  # its SeriesInstanceUID

    @property
    def rel(self) -> str:
        return self.record.rel

    @property
    def path(self) -> Any:
        return self.record.path

    @property
    def label(self) -> str:
        return self.record.label


def _series_uid(path: Any) -> str | None:
    """The SeriesInstanceUID in a DICOM file's header (pixels are not read), None for a file
    without one or that cannot be read (its read reports it later)."""
    import pydicom

    from pipeline import images

    try:
        with images.open_regular(path) as fh:
            ds = pydicom.dcmread(fh, force=True, stop_before_pixels=True,
                                 specific_tags=["SeriesInstanceUID"])
        uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    except Exception:  # noqa: BLE001 - any damage: not a series slice; predicting says why
        return None
    return uid or None


def series_slices(records: Sequence[Any]) -> list[SeriesSlice]:
    """The single-frame .dcm records that are slices of a series held one file per slice:
    two or more files with the same SeriesInstanceUID, all under one label (the folder's
    label is the volume's, as for a multi-frame file). When any series' slices are spread over
    several labels, the folder was labelled slice by slice (someone sorted each slice), so
    none is left out. A DICOM alone in its series (a key slice) is an image like any other."""
    from pipeline.names import file_ext

    by_uid: dict[str, list[Any]] = {}
    for rec in records:
        if file_ext(str(rec.path)) == ".dcm" and (uid := _series_uid(rec.path)) is not None:
            by_uid.setdefault(uid, []).append(rec)
    groups = {uid: recs for uid, recs in by_uid.items() if len(recs) > 1}
    if any(len({r.label for r in recs}) > 1 for recs in groups.values()):
        return []  # labelled per slice: each slice's label is its own
    return [SeriesSlice(r, uid) for uid, recs in groups.items() for r in recs]


def skipped_series(series: Sequence[Any]) -> dict[str, Any]:
    """The JSON's `skipped_series`: how many files left out a folder's scored classes hold
    (`n`: series files and `SeriesSlice` files; `n_slice_files` of them slices of
    `n_slice_series` series held one file per slice), and, when there are some, a few of them
    and why they are not scored."""
    from pipeline.data.discovery import SERIES_NOTE

    if not series:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(series), "reason": SERIES_NOTE,
                           "examples": sorted(r.rel for r in series)[:EXAMPLES]}
    if slices := [r for r in series if isinstance(r, SeriesSlice)]:
        out |= {"n_slice_files": len(slices), "n_slice_series": len({s.uid for s in slices})}
    return out


def _count(value: Any) -> int:
    """A count read from a JSON file: a non-negative int, else 0 (a damaged file)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def series_line(skipped: Any) -> str | None:
    """The one line evaluate prints and results.md writes for a folder's `skipped_series`
    ("skipped 2 series files (NIfTI volumes, multi-frame DICOM or TIFF stacks) and 12 DICOM
    slice files of 1 series (one file per slice): ..."); None when there are none or the file
    is damaged."""
    from pipeline.data.discovery import SERIES_NOTE

    n = _count(skipped.get("n")) if isinstance(skipped, dict) else 0
    if not n:
        return None
    slices = min(_count(skipped.get("n_slice_files")), n)
    parts = []
    if n - slices:
        parts.append(f"{n - slices} series file{'s' * (n - slices > 1)} (NIfTI volumes, "
                     "multi-frame DICOM or TIFF stacks)")
    if slices:
        k = max(_count(skipped.get("n_slice_series")), 1)
        parts.append(f"{slices} DICOM slice file{'s' * (slices > 1)} of {k} series (one file "
                     "per slice)")
    return f"skipped {' and '.join(parts)}: {SERIES_NOTE}"


SEEN_SPLITS = ("train", "val")  # an image in these is not new to the run: it shaped the models
# What the look-up cannot see, said wherever "new to the run" is: a review's 90°-rotated and
# 10 %-cropped copies of training images all counted as new (pHash is neither rotation- nor
# crop-invariant), so the new-image figures are an upper bound on independence
NOT_FOUND_NOTE = ("copies that were rotated or cropped are not recognised, so images counted "
                  "as new to the run may still include some of its own")
EXAMPLES = 20  # image paths listed per split in the JSON


@dataclass
class Overlap:
    """Which images of a folder the run has met: `report` is the JSON's `overlap_with_training`
    (`training_overlap`), `seen` maps each image found in one of the run's splits to it."""

    report: dict[str, Any]
    seen: dict[str, str]

    def new_to_run(self, rels: Sequence[str]) -> list[str] | None:
        """The images of `rels` the run neither trained nor validated on (in its test split or
        in none), in order; None when the run cannot tell (then nothing is left out)."""
        if not self.report.get("checked"):
            return None
        return [rel for rel in rels if self.seen.get(rel) not in SEEN_SPLITS]


def _official_test(manifest: dict[str, Any]) -> bool:
    """Whether a run's test split is the dataset's own `Testing/` folder (`train
    --official-test`), as `evaluate.flags` reads it."""
    return bool((manifest.get("config") or {}).get("official_test"))


def _official_runs(run: Any) -> list[tuple[Any, Any]]:
    """(RunInfo, Membership) of the other complete runs beside `run` (in its artifacts folder)
    whose test split is the official `Testing/` folder and that keep split hashes."""
    from pipeline import artifacts
    from pipeline.data.membership import Membership

    if run.path.parent.name != "runs" or _official_test(run.manifest):
        return []
    out = []
    for info in artifacts.list_runs(run.path.parent.parent):
        if info.path.resolve() == run.path.resolve():
            continue
        try:
            manifest = artifacts.read_json(info.path / run_files.MANIFEST)
        except artifacts.ArtifactError:
            continue
        if _official_test(manifest) and (found := Membership.of_run(info.path)) is not None:
            out.append((info, found))
    return out


@dataclass
class CopyCheck:
    """The split hashes `training_overlap` looks a folder's images up in: the run's own
    (`own`, None when it keeps none) and those of the official-`Testing/` runs beside it."""

    run: Any
    own: Any  # data.membership.Membership | None
    others: list[tuple[Any, Any]]  # (RunInfo, Membership), newest first

    @classmethod
    def of_run(cls, run: Any) -> CopyCheck:
        """The run's split hashes and its official-`Testing/` neighbours' (`_official_runs`)."""
        from pipeline.data.membership import Membership

        own = Membership.of_run(run.path)
        return cls(run, own, [] if own is None else _official_runs(run))

    @property
    def memberships(self) -> list[Any]:
        """Where each image is looked up (`Membership.find`, in this order); none without the
        run's own hashes."""
        return [] if self.own is None else [self.own, *(m for _, m in self.others)]

    def overlap(self, records: Sequence[Any], found: Sequence[Any]) -> Overlap:
        """The `Overlap` of `records` from each one's look-up in `memberships` (`found`, in
        the order of `records`: None for an unreadable file), as `membership.find_files` or
        `evaluate`'s one pass gives it."""
        from pipeline.data.membership import FILE

        if self.own is None:
            return Overlap({"checked": False, "reason": f"the run has no readable {FILE}, so "
                            "copies of its images cannot be found (`python -m pipeline ood "
                            f"--run {self.run.run_id}` adds it)"}, {})
        splits = {s: {"exact": 0, "near": 0} for s in ("train", "val", "test")}
        examples: dict[str, list[str]] = {s: [] for s in splits}
        seen: dict[str, str] = {}
        for rec, hits in zip(records, found, strict=True):
            hit = hits[0] if hits else None
            if hit is None or hit.split not in splits:
                continue
            seen[rec.rel] = hit.split
            exact = hit.exact if hit.exact is not None else hit.distance == 0  # an older file
            splits[hit.split]["exact" if exact else "near"] += 1
            if len(examples[hit.split]) < EXAMPLES:
                examples[hit.split].append(rec.rel)
        n_seen = sum(sum(splits[s].values()) for s in SEEN_SPLITS)
        report: dict[str, Any] = {
            "checked": True,
            "method": f"the perceptual hash of each image (or of its mirror image) within "
                      f"{self.own.threshold} bits of an image of the run's splits ({FILE}), as "
                      "predict tags images; exact: that image pixel for pixel, near: a changed "
                      "copy",
            # n_new: the readable images found in neither (in the run's test split or in none)
            "splits": splits, "n_seen": n_seen,
            "n_new": sum(1 for hits in found if hits is not None) - n_seen,
            "examples": {s: v for s, v in examples.items() if v}}
        for k, (info, _) in enumerate(self.others, 1):  # newest first: the first that helps
            in_test = sum(1 for hits in found if hits and hits[k] and hits[k].split == "test")
            if n_seen and in_test > report["n_new"]:
                report["official_test_run"] = {"run_id": info.run_id, "title": info.title,
                                               "n_in_its_test": in_test}
                break
        return Overlap(report, seen)


def training_overlap(run: Any, records: Sequence[Any], progress: Any = None) -> Overlap:
    """Images of `records` that are the run's own images or copies of them, per split.

    Public datasets are often merged from each other (Nickparvar's includes Sartaj's), and a
    split of the whole dataset trains on most of its `Testing/` folder, so an "external" folder
    can hold the very images a model was trained on, inflating its score. The check is
    `predict`'s (`data.membership`: the perceptual hash within the audit's threshold, its
    mirror image too, against the run's `split_hashes.json`), so re-encoded, resized or
    re-exported copies are found, not only byte-identical files; "exact" counts the run's
    image pixel for pixel, "near" a changed copy. When this run is not an official-`Testing/`
    run and one beside it is, `official_test_run` says how many of the images are in that
    run's test split (the images it never trained on): the run to evaluate them with instead.
    Each file is decoded here (`membership.find_files`); `evaluate` looks images up while it
    decodes them to predict (`CopyCheck`), once.
    """
    from pipeline.data.membership import find_files

    check = CopyCheck.of_run(run)
    found = (find_files(check.memberships, [r.path for r in records], progress)
             if check.own is not None else [None] * len(records))
    return check.overlap(records, found)

"""Dataset discovery: which folders hold which class, and the records of every image file.

Layouts found by `discover` (folder names matched case- and separator-insensitively):

- ``sartaj``: ``Training/`` and ``Testing/`` holding ``glioma_tumor``, ``meningioma_tumor``,
  ``no_tumor``, ``pituitary_tumor`` (Bhuvaji et al., the Kaggle "Brain Tumor Classification").
- ``split``: split folders (``Training/`` and ``Testing/``, ``train/`` and ``test/``...) holding
  class folders of any other accepted names (``glioma``, ``notumor``, ``Healthy``...), as
  Nickparvar's "Brain Tumor MRI Dataset" does. Runs before 2026-12-06 recorded it as
  ``nickparvar``, another dataset's name for a student's own folders (`layout_name` reads it).
- ``flat``: class folders directly under the root, no split.
- ``binary``: ``yes/`` (tumour) and ``no/`` (no tumour), with or without split folders.

Images may sit in folders below their class folder (``Glioma/patient_007/slice_3.jpg``): the
first such level is read as a patient or series (`ImageRecord.patient`), and the splits keep each
one whole.

Each class folder's own name is kept beside its class (`Dataset.folders`, the manifest's
``data.class_folders``): "Healthy" becomes ``no_tumor``, and `class_folders_note` says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.names import IMAGE_EXTS, NIFTI_EXTS, file_ext

CANONICAL: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")
BINARY: tuple[str, ...] = ("no_tumor", "tumor")
IGNORED_ROOT_FOLDERS = {"masks"}  # the synthetic generator writes ground-truth masks there
IGNORED_NOTE = "ignored folders (no known class name)"
# why a series file (a NIfTI volume, a multi-frame DICOM, a TIFF stack) in a class folder is not
# scored: evaluate and discover's error say it (one home)
SERIES_NOTE = ("a folder's label applies to a whole volume, not to each of its slices (most "
               "slices of a tumour volume show no tumour), so their slices are not scored with "
               "it; predict reads them slice by slice")
# recorded layout names of older runs -> the name used now (a run's manifest keeps what it wrote)
LAYOUT_ALIASES = {"nickparvar": "split"}


class DatasetError(ValueError):
    """A data folder that cannot be used; the message says what was found and what was expected."""


# ----------------------------------------------------------------------------- labels

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


def layout_name(recorded: str) -> str:
    """A layout as shown now: an older run's recorded name read as today's (`LAYOUT_ALIASES`)."""
    return LAYOUT_ALIASES.get(recorded, recorded)


def _same_name(folder: str, label: str) -> bool:
    """Whether a folder's name says its class already ("Glioma", "glioma_tumor", "No Tumour")."""
    def key(name: str) -> str:
        return _norm(name).replace("tumour", "tumor")

    return key(folder) in (key(label), key(label) + "tumor")


def class_folders_note(class_folders: Mapping[str, str] | None) -> str | None:
    """"class folders: Healthy → no_tumor, yes → tumor", the folders whose names are not their
    class's (`Dataset.folders`, the manifest's `data.class_folders`), for audit and train;
    None when every name says its class, or for a run recorded before the mapping was. The
    user's folder names had disappeared behind ours (a review, 2026-12-06)."""
    renamed = [f"{f} → {c}" for f, c in renamed_folders(class_folders)]
    return f"class folders: {', '.join(renamed)}" if renamed else None


def renamed_folders(class_folders: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The (folder name, class) pairs of `class_folders` (class folder's path -> class, as
    `Dataset.folders`) whose name is not its class's ("Healthy", "no_tumor"; not "Glioma" or
    "glioma_tumor"), each name once (train/Healthy and test/Healthy are one), sorted: what
    audit, train and the dashboard's data lines show. A damaged entry is skipped."""
    if not isinstance(class_folders, Mapping):
        return []
    pairs = {(f.rsplit("/", 1)[-1], c) for f, c in class_folders.items()
             if isinstance(f, str) and isinstance(c, str)}
    return sorted((f, c) for f, c in pairs if not _same_name(f, c))


def folders_by_class(manifest: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Class -> the names of a run's class folders not named as it ({"no_tumor": ["Healthy"]}),
    from its manifest's `data.class_folders` (`renamed_folders`); {} when every folder is named
    as its class, or for a run recorded before the mapping was. What `predict` and `explain`
    say beside an answer (`cli.class_folders`), and explain's captioned overlays."""
    data = manifest.get("data") if isinstance(manifest, Mapping) else None
    out: dict[str, list[str]] = {}
    for folder, label in renamed_folders(data.get("class_folders")
                                         if isinstance(data, Mapping) else None):
        out.setdefault(label, []).append(folder)
    return out


def ignored_note(folders: Iterable[str]) -> str | None:
    """The one line every command (audit, train, evaluate, explain-eval) prints for the folders
    `discover` left out because their names map to no class ("ignored folders (no known class
    name): astrocytoma"); None when there are none. Without it train and audit dropped such a
    folder without a word."""
    names = list(folders)
    return f"{IGNORED_NOTE}: {', '.join(names)}" if names else None


def patient_note(n: int, example: str) -> str:
    """The line audit and train print for a dataset with patient/series folders."""
    return (f"patient/series folders: {n} (folders between the class folders and the images, "
            f"e.g. {example}/): train keeps each folder's images in one split")


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ImageRecord:
    """One image file of a dataset and what its folders say about it."""

    path: Path  # absolute
    rel: str  # posix path relative to the dataset root
    label: str  # canonical label
    split: str | None  # "train"/"test" (or "val") from the dataset's own folders; None if flat
    # the patient or series folder: the first folder between the class folder and the file
    # ("Glioma/patient_007"), None for a file directly in its class folder. make_splits keeps
    # each one in one split: slices of one patient in train and test leak the patient.
    patient: str | None = None


@dataclass
class Dataset:
    """What `discover` found: the layout, the classes present and every image, sorted by path."""

    root: Path
    layout: str  # "sartaj" | "split" | "flat" | "binary"
    classes: list[str]  # sorted canonical labels present
    records: list[ImageRecord]  # sorted by rel
    binary: bool
    ignored: list[str] = field(default_factory=list)  # folders that did not map to a class
    # NIfTI volumes in the class folders: never one image, so never a record (`SERIES_NOTE`)
    volumes: list[ImageRecord] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # class folder (rel) -> its label

    def patients(self) -> list[str]:
        """The patient/series folders (`ImageRecord.patient`) holding images, sorted."""
        return sorted({r.patient for r in self.records if r.patient})

    def counts(self) -> dict[str, dict[str, int]]:
        """{split or "all": {class: n}} with every class present in every split."""
        out: dict[str, dict[str, int]] = {}
        for rec in self.records:
            key = rec.split or "all"
            out.setdefault(key, dict.fromkeys(self.classes, 0))[rec.label] += 1
        order = {"train": 0, "val": 1, "test": 2, "all": 3}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


# ----------------------------------------------------------------------------- folders


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The image files under `folder`, and its NIfTI volumes (`Dataset.volumes`)."""
    out, volumes = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_EXTS:
                out.append(Path(dirpath) / name)
            elif file_ext(name) in NIFTI_EXTS:
                volumes.append(Path(dirpath) / name)
    return out, volumes


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
        parts.append(f"1 file, {files[0]}" if len(files) == 1
                     else f"{len(files)} files such as {files[0]}")
    return "; ".join(parts) or "nothing"


LABEL_FILE_EXTS = (".csv", ".tsv")


def _labels_file_note(root: Path) -> str:
    """"; a labels file (labels.csv) is not read: ..." when the folder holds one: a student's
    images/ + labels.csv was refused without saying the CSV was never looked at (a review,
    2026-12-06)."""
    try:
        found = sorted(p.name for p in root.iterdir()
                       if p.is_file() and p.suffix.lower() in LABEL_FILE_EXTS)
    except OSError:
        return ""
    if not found:
        return ""
    return (f"; a labels file ({found[0]}) is not read: the class is the name of the folder an "
            "image is in, so move each image into its class's folder")


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


_ClassFolder = tuple[Path, str, str | None]  # (folder, canonical label, split or None)


def _split_layout(split_dirs: list[tuple[Path, str]], top: list[Path]
                  ) -> tuple[list[_ClassFolder], list[str], bool, str]:
    """Class folders inside split folders (Training/, Testing/...): sartaj, split or binary."""
    inner_names = [c.name for d, _ in split_dirs for c in _visible_dirs(d)]
    binary = _is_binary(inner_names)
    groups: list[_ClassFolder] = []
    ignored: list[str] = []
    for d, split in split_dirs:
        mapped, ign = _class_dirs(d, binary)
        ignored += [f"{d.name}/{n}" for n in ign]
        groups += [(c, label, split) for c, label in mapped]
    ignored += [d.name for d in top if not canonical_split(d.name)]
    if binary:
        layout = "binary"
    elif any(_SARTAJ_NAME.search(c.name.lower()) for c, _, _ in groups):
        layout = "sartaj"
    else:  # not "nickparvar" (before 2026-12-06): a student's own train/Healthy is no one's
        layout = "split"
    return groups, ignored, binary, layout


def _flat_layout(root: Path, top: list[Path]) -> tuple[list[_ClassFolder], list[str], bool, str]:
    """Class folders directly under the root: flat or binary, no split."""
    binary = _is_binary(d.name for d in top)
    mapped, ignored = _class_dirs(root, binary, frozenset(IGNORED_ROOT_FOLDERS))
    groups: list[_ClassFolder] = [(c, label, None) for c, label in mapped]
    return groups, ignored, binary, "binary" if binary else "flat"


def _records(given: Path, root: Path, groups: list[_ClassFolder]
             ) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Every image file of the class folders, and every NIfTI volume, each sorted by path
    relative to the root."""
    records, volumes = [], []
    for folder, label, split in groups:
        images, found_volumes = _image_files(folder)
        for path, into in [*((p, records) for p in images), *((p, volumes) for p in found_volumes)]:
            rel = path.relative_to(root).as_posix()
            below = path.relative_to(folder).parts
            patient = (folder / below[0]).relative_to(root).as_posix() if len(below) > 1 else None
            into.append(ImageRecord(path=path, rel=rel, label=label, split=split,
                                    patient=patient))
    if not records:
        found = ", ".join(sorted({c.relative_to(root).as_posix() + "/" for c, _, _ in groups}))
        only = (f", only {len(volumes)} NIfTI volume{'s' * (len(volumes) > 1)}: {SERIES_NOTE}"
                if volumes else "")
        raise DatasetError(
            f"the class folders in {given} ({found}) hold no images{only}; accepted extensions: "
            f"{', '.join(sorted(IMAGE_EXTS))}"
        )
    return sorted(records, key=lambda r: r.rel), sorted(volumes, key=lambda r: r.rel)


def discover(root: str | Path) -> Dataset:
    """Find the class folders under `root` (see the module docstring for the layouts).

    Raises DatasetError, saying what was found instead, when `root` is missing, empty, holds no
    class folders or only empty ones.
    """
    given = Path(root).expanduser()
    if not given.exists():
        raise DatasetError(f"data folder {given} does not exist")
    if not given.is_dir():
        raise DatasetError(f"data folder {given} is not a folder")
    root = _find_root(given.resolve())
    top = [d for d in _visible_dirs(root) if d.name not in IGNORED_ROOT_FOLDERS]
    if not top and not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DatasetError(f"data folder {given} is empty")
    split_dirs = [(d, split) for d in top if (split := canonical_split(d.name))]
    groups, ignored, binary, layout = (_split_layout(split_dirs, top) if split_dirs
                                       else _flat_layout(root, top))
    if not groups:
        raise DatasetError(
            f"no class folders found in {given}: found {_describe(root)}. Expected class folders "
            "named like glioma, meningioma, pituitary, no_tumor (optionally inside Training/ and "
            f"Testing/), or yes/ and no/{_labels_file_note(root)}"
        )
    records, volumes = _records(given, root, groups)
    classes = sorted({r.label for r in records})
    folders = {c.relative_to(root).as_posix(): label for c, label, _ in groups}
    return Dataset(root=root, layout=layout, classes=classes, records=records, binary=binary,
                   ignored=sorted(ignored), volumes=volumes,
                   folders=dict(sorted(folders.items())))


def untrainable(ds: Dataset) -> str | None:
    """Why `ds` cannot be trained on, or None: a classifier needs two classes with images.

    The one message `train` refuses with (before any work), and `train --print-config` and
    `audit` print: which folders mapped to which class and which were ignored, so a dataset of
    other classes (Glioblastoma/, Metastasis/, Normal/) is told why, not "got 1".
    """
    if len(ds.classes) >= 2:
        return None
    mapped = ", ".join(f"{folder}/ -> {label}" for folder, label in ds.folders.items())
    ignored = f"; ignored (no known class name): {', '.join(f'{d}/' for d in ds.ignored)}" \
        if ds.ignored else ""
    known = "tumour, no tumour (yes/, no/)" if ds.binary else ", ".join(CANONICAL)
    return (f"training needs at least 2 classes with images, {ds.root.name} has "
            f"{len(ds.classes)}: {mapped or 'no class folder'}{ignored}. Known classes: "
            f"{known}")

"""Series files on the command line: a multi-frame DICOM, a zip of .dcm slices, a multi-page
TIFF or a NIfTI volume (.nii, .nii.gz), slice by slice.

The dashboard shows every slice of a series (`images.decode_slices`); `predict` and `explain`
used to read such a file as one image (a multi-frame DICOM's first frame, a zip not at all).
Here a series file becomes one item per slice, named as the dashboard names them ("scan.dcm ·
slice 2 of 3"; a long series, of which only `dicom.MAX_SLICES` are analysed, by the real frame:
"scan.dcm · frame 3 of 100 (64 of 100 frames analysed)"), so every slice gets its row in the
printed output, the JSON, a resumable CSV and explain's overlays and journal. Only files named
.dcm, .zip, .tif, .tiff, .nii or .nii.gz (and scanner exports without a suffix) are opened to
count their slices; anything else (and a series that cannot be read) stays one item, whose
read reports the problem. A multi-page TIFF used to be read as its first page, silently.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import dicom, dicom_zip, images, nifti, tiff_stack
from pipeline.names import NIFTI_EXTS, file_ext
from pipeline.stream import may_be_dicom_export

# files that may hold several slices (`names.file_ext`: ".nii.gz" is one extension)
SERIES_SUFFIXES = (".dcm", ".zip", ".tif", ".tiff", *NIFTI_EXTS)
# series files only, never one image: a one-item read goes through the series decoder
VOLUME_ONLY = (".zip", *NIFTI_EXTS)
CACHED_SERIES = 2  # decoded series kept while their slices are read (slices come in order)
_NIFTI_MAGIC = 348  # bytes enough to tell an uncompressed NIfTI by its magic


@dataclass(frozen=True)
class Slice:
    """Slice `index` (0-based) of the `count` slices decoded from the series file at `path`.

    When the file holds more (`total`: its frames, or a zip's slices), only `count` evenly
    spaced ones are decoded (`dicom.slice_indices`), and the name gives the real place."""

    path: str
    index: int
    count: int
    total: int = 0  # what the file holds when only `count` of it is analysed; 0: all is
    unit: str = "slice"  # with `total`: "frame" (a multi-frame DICOM), "page" (a TIFF stack)
    volumes: int = 1  # a 4-D NIfTI's volumes: only the first is read, and its name says so

    @property
    def number(self) -> int:
        """Its place in the file, 1-based (frame 3 of 100 is the 2nd of the 64 analysed)."""
        return dicom.slice_indices(self.total)[self.index] + 1 if self.total else self.index + 1

    def __str__(self) -> str:
        path = f"{self.path} · volume 1 of {self.volumes}" if self.volumes > 1 else self.path
        if not self.total:  # every slice analysed: the name the dashboard gives it
            return f"{path} · slice {self.index + 1} of {self.count}"
        return (f"{path} · {self.unit} {self.number} of {self.total} "
                f"({self.count} of {self.total} {self.unit}s analysed)")


@dataclass(frozen=True)
class SliceName:
    """A slice's name read back (`parse_slice_name`): its file, unit, number in the file and
    how many the file holds ("slice 2 of 6": 6)."""

    file: str
    unit: str
    number: int
    total: int = 0


# a 4-D volume's "scan.nii · volume 1 of 40" is the file part: its slices group as one file's
_SLICE_NAME = re.compile(r"^(?P<file>.+) · (?P<unit>slice|frame|page) (?P<number>\d+) of "
                         r"(?P<total>\d+)"
                         r"(?: \(\d+ of \d+ \w+ analysed\))?$", re.DOTALL)


def places_words(unit: str, places: Sequence[int], shown: int = 4) -> str:
    """Slices by their places, in words: "slice 3", "slices 1 and 5", "slices 2 to 9" (a run of
    three or more), "slices 1, 2, 3, 4 and 6 more"."""
    places = list(places)
    if len(places) > 2 and places == list(range(places[0], places[-1] + 1)):
        return f"{unit}s {places[0]} to {places[-1]}"
    more = len(places) - shown if len(places) > shown + 1 else 0
    nums = [str(p) for p in places[:len(places) - more]] + [f"{more} more"] * bool(more)
    return f"{unit}s {', '.join(nums[:-1])} and {nums[-1]}" if nums[1:] else f"{unit} {nums[0]}"


def parse_slice_name(name: str) -> SliceName | None:
    """The parts of a name `Slice` gives ("scan.dcm · frame 3 of 100 (64 of 100 frames
    analysed)"), or None for any other name."""
    m = _SLICE_NAME.match(name)
    return SliceName(m["file"], m["unit"], int(m["number"]), int(m["total"])) if m else None


def blank_note(unit: str, places: Sequence[int], total: int) -> str:
    """A series' blank slices, left out, in one clause: "slices 1 and 5 of 5 are blank (almost
    all one grey level), not analysed" (the dashboard's series note, `predict`'s and `explain`'s
    line per series)."""
    verb = "are" if len(places) > 1 else "is"
    return f"{places_words(unit, places)} of {total} {verb} {images.BLANK_SLICE}"


def expand_series(paths: Sequence[str | Path]) -> list[str | Slice]:
    """`paths` as strings, each series file (.dcm or .zip holding more than one slice) replaced
    by its slices in series order (`images.decode_slices`: at most `dicom.MAX_SLICES`). A file
    that cannot be read, or whose frames cannot be (pixel data shorter than its frames, no
    decoder), stays one item: its read reports it once, not once per slice."""
    out: list[str | Slice] = []
    for p in map(str, paths):
        total, unit, volumes = 1, "slice", 1
        # a scanner's export without .dcm ("IM0001") may hold frames too
        if file_ext(p) in SERIES_SUFFIXES or may_be_dicom_export(p):
            # unreadable: read again later, where the reason becomes the file's failure
            with contextlib.suppress(images.ImageError):
                total, unit, volumes = _slice_count(p)
        n = len(dicom.slice_indices(total))
        if n < total:  # thinned: named by the real frame, the unit said
            out += [Slice(p, k, n, total, unit, volumes) for k in range(n)]
        else:  # every slice: Slice(path, k, n), as before
            out += [Slice(p, k, n, volumes=volumes) for k in range(n)] if n > 1 else [p]
    return out


def _slice_count(path: str) -> tuple[int, str, int]:
    """How many slices the series file at `path` holds, what they are ("frame", "slice"),
    and how many volumes (a 4-D NIfTI's; 1 for any other file): a DICOM's frames from its
    header alone (a folder of single-frame .dcm files is not read twice before anything is
    predicted); a zip's slices by decoding it (they are sorted and filtered as the dashboard
    does); a NIfTI volume's axial slices from its header."""
    with images.open_regular(path) as fh:
        if file_ext(path) in (".tif", ".tiff"):  # a stack's pages, from the header
            return tiff_stack.tiff_pages(fh), "page", 1
        if nifti.is_nifti(fh.read(_NIFTI_MAGIC), path):
            fh.seek(0)
            slices, volumes = nifti.volume_slices(fh, path)
            return slices, "slice", volumes
        fh.seek(0)
        if not dicom_zip.is_zip(fh.read(4), path):
            fh.seek(0)
            return dicom.header_frames(fh, path), "frame", 1
    data = images.read_file(path)
    return int(images.decode_slices(data, path)[1]["frames"]), "slice", 1


# what a file says of itself, in `images.decode_slices`' info (`SliceReader.facts`)
HEADER_FACTS = ("radiological", "modality", "t2_header")


class SliceReader:
    """Decodes items of `expand_series` for reading threads: a slice from its series, decoded
    once for all its slices (the last `CACHED_SERIES` series are kept), a .zip through the
    series decoder (its reason when it is not a DICOM zip), anything else as one image."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # a series' decoded slices, or why it cannot be decoded (not decoded again per slice)
        self._series: OrderedDict[str, _Decoded | images.ImageError] = OrderedDict()
        # one-item reads of a volume: its info's `HEADER_FACTS` (`facts`)
        self._read_facts: dict[str, dict] = {}

    def __call__(self, item: str | Path | Slice) -> np.ndarray:
        if isinstance(item, Slice):
            return self._series_of(item).slice(item)
        if file_ext(str(item)) in VOLUME_ONLY:  # one slice, or a reason from the series decoder
            slices, info = images.decode_slices(images.read_file(item), str(item))
            self._read_facts[str(item)] = {k: info.get(k) for k in HEADER_FACTS}
            return slices[0]
        return images.refuse_blank(images.read_image(item), str(item))  # nothing to answer

    def with_facts(self, item: str | Path | Slice) -> tuple[np.ndarray, dict]:
        """`self(item)` and `facts(item)` in one step: a series slice's both from the one
        decoded series (asked for apart, another thread's reads could push that series out
        of the cache in between, and its file's verdicts were lost: a review, at 4 threads)."""
        if isinstance(item, Slice):
            decoded = self._series_of(item)
            return decoded.slice(item), decoded.facts(item)
        image = self(item)
        return image, self.facts(item)

    def _series_of(self, item: Slice) -> _Decoded:
        """The decoded series of `item`, or ImageError naming the slice."""
        decoded = self._slices(item.path)
        if isinstance(decoded, images.ImageError):
            # the slice's name already holds the path: "<slice>: <reason>", path once
            reason = str(decoded).removeprefix(f"{item.path}: ")
            raise images.ImageError(f"{item}: {reason}")
        return decoded

    def radiological(self, item: str | Path | Slice) -> bool:
        """Whether `item`, just read, is shown with the patient's right on the picture's left
        as its file says (a NIfTI volume with a usable affine, a DICOM whose orientation
        says so: `names.sides_words`); False where the file does not say."""
        return bool(self.facts(item).get("radiological"))

    def modality(self, item: str | Path | Slice) -> str:
        """The DICOM Modality code of `item`, just read (`dicom.modality`: "MR", "CT", ...;
        a zipped series' when its slice files agree); "" for any other file."""
        return str(self.facts(item).get("modality") or "")

    def t2_header(self, item: str | Path | Slice) -> bool:
        """Whether the DICOM header of `item`, just read, says T2 or FLAIR by its echo or
        inversion time (`dicom.t2_header`; a zipped series' when every slice file says so)."""
        return bool(self.facts(item).get("t2_header"))

    def facts(self, item: str | Path | Slice) -> dict:
        """What the file of `item`, just read, says of itself (`HEADER_FACTS`): its series'
        decoding info, or a single DICOM's header; {} where it says nothing (a series pushed
        out of the cache since: read with `with_facts` where threads share the reader)."""
        if isinstance(item, Slice):
            decoded = self._series.get(item.path)
            return decoded.facts(item) if isinstance(decoded, _Decoded) else {}
        path = str(item)
        if file_ext(path) == ".dcm" or may_be_dicom_export(path):  # its header says
            import pydicom

            with contextlib.suppress(Exception), images.open_regular(path) as fh:
                ds = pydicom.dcmread(fh, force=True, stop_before_pixels=True)
                return {"radiological": dicom.radiological(ds), "modality": dicom.modality(ds),
                        "t2_header": dicom.t2_header(ds)}
            return {}
        return self._read_facts.get(path, {})

    def _slices(self, path: str) -> _Decoded | images.ImageError:
        with self._lock:  # one decode per series, even with several threads asking
            if path not in self._series:
                try:
                    self._series[path] = _Decoded(
                        *images.decode_slices(images.read_file(path), path))
                except images.ImageError as exc:
                    self._series[path] = exc
                while len(self._series) > CACHED_SERIES:
                    self._series.popitem(last=False)
            self._series.move_to_end(path)
            return self._series[path]


@dataclass(frozen=True)
class _Decoded:
    """A series as decoded: its slices and `images.decode_slices`' info (`indices`: each
    slice's place in the file; `unreadable`: the pages left out, with their reasons; `blank`:
    the places of the blank slices left out)."""

    slices: list[np.ndarray]
    info: dict

    def facts(self, item: Slice) -> dict:
        """What the file says of `item` (`HEADER_FACTS`): the series' own, or, where a zip of
        several series gives each slice its own modality and T2 verdict, that slice's."""
        facts = {k: self.info.get(k) for k in HEADER_FACTS}
        own = {"modality": self.info.get("slice_modality"),
               "t2_header": self.info.get("slice_t2_header")}
        with contextlib.suppress(images.ImageError):
            k = self._index(item)
            facts.update({key: v[k] for key, v in own.items() if v and k < len(v)})
        return facts

    def slice(self, item: Slice) -> np.ndarray:
        """`item`'s pixels, found by its place in the file (a TIFF page that could not be
        decoded, or a blank slice, is left out, so positions shift); ImageError with that
        page's own reason."""
        return self.slices[self._index(item)]

    def _index(self, item: Slice) -> int:
        """Where `item` lies in `slices`, or ImageError (`slice`)."""
        place = item.number - 1
        for page, reason in self.info.get("unreadable") or ():
            if page == place + 1:
                raise images.ImageError(f"{item}: {reason}")
        if place + 1 in (self.info.get("blank") or ()):  # no answer for it; the others keep theirs
            raise images.ImageError(f"{item}: {images.BLANK_SLICE}")
        indices = list(self.info.get("indices") or ())
        if not indices:  # every slice decoded, in order
            k = item.index
        else:  # past the end when the file no longer holds that place
            k = indices.index(place) if place in indices else len(self.slices)
        if k >= len(self.slices):
            raise images.ImageError(f"{item}: the file changed while it was read")
        return k

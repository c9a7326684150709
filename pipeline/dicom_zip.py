"""Zipped DICOM series for `pipeline.images`: every slice of a zip of .dcm files, sorted along
the series' axis (split from `pipeline.dicom`, which decodes each file's frames).

Only pixels, the Modality code and counts leave this module: no other DICOM attribute is
returned or put in a message, and member names of a zip are never reported (folders in a PACS
export are often named after the patient).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dicom import (
    MAX_SLICES,
    _frames,
    _open,
    modality,
    radiological,
    slice_indices,
    t2_header,
)
from pipeline.images import ImageError

MAX_ZIP_MEMBERS = 2000  # files in a zipped series
MAX_ZIP_BYTES = 256 * 1024 * 1024  # what a zipped series may unpack to, in all


def is_zip(data: bytes, name: str) -> bool:
    """Whether an upload is a zip (by its magic bytes or its name)."""
    return data[:4] == b"PK\x03\x04" or name.lower().endswith(".zip")


def decode_zip(data: bytes, label: str, max_pixels: int
               ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A series uploaded as a zip of DICOM files: every slice, sorted along the series' axis;
    a zip of several series (a study's export) series after series, in the zip's order
    (`info["series"]`: how many, by SeriesInstanceUID).

    Files that are not DICOM (no "DICM" marker, no .dcm name) are skipped, counted in
    `info["not_dicom"]`; ImageError when no file is. A slice file that cannot be unpacked or
    decoded is left out, its place and reason in
    `info["unreadable"]` (`indices` keeps the slices returned), as a multi-page TIFF's damaged
    page is: one damaged file cost the whole series. Its place is its position along the axis
    when its header can be read, else after the others. ImageError, naming the first failure,
    when no slice can be read. Member names are never reported (folders in a PACS export are
    often named after the patient); reads are bounded (MAX_ZIP_MEMBERS, MAX_ZIP_BYTES in all).
    """
    import zipfile
    import zlib

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        # a PACS export's DICOMDIR indexes the files and holds no image: not a slice
        members = [m for m in zf.infolist() if not m.is_dir()
                   and not m.filename.startswith("__MACOSX/")
                   and not Path(m.filename).name.startswith(".")
                   and Path(m.filename).name.upper() != "DICOMDIR"]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise ImageError(f"{label}: not a readable zip file") from None
    if not members:
        raise ImageError(f"{label}: the zip holds no files")
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageError(f"{label}: the zip holds {len(members)} files (at most "
                         f"{MAX_ZIP_MEMBERS} slices per series)")
    budget = MAX_ZIP_BYTES
    # (position, member, its frames, or one `_Unreadable` per frame)
    found: list[tuple[float | None, int, list[np.ndarray | _Unreadable]]] = []
    # per slice file whose header was read, by its place in the zip: what the header says
    # (`_Header`: shown radiologically, Modality code, series)
    headers: dict[int, _Header] = {}
    not_dicom = 0
    for k, member in enumerate(members):
        where = f"{label}: slice file {k + 1}"
        try:
            with zf.open(member) as fh:
                blob = fh.read(budget + 1)
        except RuntimeError:  # encrypted
            raise ImageError(f"{label}: the zip is password-protected") from None
        except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError):
            # zlib.error: a broken deflate stream (it escaped as a traceback before)
            found.append((None, k, [_Unreadable(where, "damaged in the zip (it cannot be "
                                                "unpacked)")]))
            continue
        budget -= len(blob)
        if budget < 0:
            raise ImageError(f"{label}: the zip unpacks to more than "
                             f"{MAX_ZIP_BYTES / 1e6:.0f} MB")
        if blob[128:132] != b"DICM" and not member.filename.lower().endswith(".dcm"):
            not_dicom += 1
            continue
        found.append(_zipped_slice(blob, k, where, max_pixels, headers))
        del blob
    if not_dicom == len(members):  # a zip of JPEGs, say: no series in it
        raise ImageError(f"{label}: none of the {len(members)} files in the zip is DICOM; "
                         "upload a zip of .dcm slices")
    # A study's export holds several series (T1, T2, a localiser): each series stays
    # together, in the zip's order of series, its slices along the axis (sorted by position
    # alone, a T1 and a T2 slice alternated). Only files that gave a slice make a series or
    # the zip's verdicts (a header without pixels is no series); a damaged file of a series
    # keeps its place in it.
    kept = {k: headers[k] for _, k, frames in found if k in headers
            and any(not isinstance(f, _Unreadable) for f in frames)}
    series = list(dict.fromkeys(h.series for h in kept.values()))
    rank = {k: series.index(h.series) for k, h in headers.items() if h.series in series}
    by_place = all(pos is not None for pos, _, frames in found
                   if not isinstance(frames[0], _Unreadable))
    found.sort(key=lambda t: (rank.get(t[1], len(series)),  # a file without a header: last
                              *((t[0] is None, t[0] or 0.0) if by_place else ()), t[1]))
    every = [f for _, _, frames in found for f in frames]
    member = [k for _, k, frames in found for _ in frames]  # each slice's file in the zip
    total = len(every)
    indices = [i for i in slice_indices(total) if not isinstance(every[i], _Unreadable)]
    unreadable = [(i + 1, bad.reason) for i in slice_indices(total)
                  if isinstance(bad := every[i], _Unreadable)]
    if not indices:  # nothing to show: the file fails, as it did before on any damage
        bad = next(f for f in every if isinstance(f, _Unreadable))
        raise ImageError(f"{bad.where}: {bad.reason}")
    slices = [f for i in indices if isinstance(f := every[i], np.ndarray)]
    codes = sorted({h.modality for h in kept.values()})
    own = [headers.get(member[i]) for i in indices]  # each slice's file's header (None: unread)
    info = {"format": "DICOM series", "mode": "", "width": slices[0].shape[1],
            "height": slices[0].shape[0], "frames": total, "slices": len(slices),
            "indices": indices, "unreadable": unreadable,
            "radiological": bool(kept) and all(h.radiological for h in kept.values()),
            # the one code, when every slice file read names the same one
            "modality": codes[0] if len(codes) == 1 else "",
            # T2 or FLAIR by the times in every slice file's header (`dicom.t2_header`)
            "t2_header": bool(kept) and all(h.t2 for h in kept.values()),
            "series": max(1, len(series)),  # how many series (SeriesInstanceUID) it holds
            # other files skipped: a PACS or CD export's README.TXT, INDEX.HTM, AUTORUN.INF
            # (one of them refused the whole zip: a review)
            "not_dicom": not_dicom,
            # each slice's own, for a zip of several series (`series.SliceReader.facts`)
            "slice_modality": [h.modality if h else "" for h in own],
            "slice_t2_header": [bool(h and h.t2) for h in own]}
    return slices, info


@dataclass(frozen=True)
class _Unreadable:
    """A zipped slice that could not be read: `where` names its file in the zip ("<zip>:
    slice file 3", by its place, never its name), `reason` says why."""

    where: str
    reason: str


@dataclass(frozen=True)
class _Header:
    """What a slice file's header says: `dicom.radiological`, `dicom.modality`,
    `dicom.t2_header` and its SeriesInstanceUID ("" without one), which only groups slices and
    never leaves."""

    radiological: bool
    modality: str
    series: str
    t2: bool


def _zipped_slice(blob: bytes, k: int, where: str, max_pixels: int, headers: dict[int, _Header]
                  ) -> tuple[float | None, int, list[np.ndarray | _Unreadable]]:
    """Zip member `k` (a DICOM file's bytes) as (position along the axis, k, its frames); a
    file that cannot be decoded gives one `_Unreadable` per frame its header names (one when
    the header cannot be read), placed by its position when the header has one. `headers[k]`
    gets what its header says, when it can be read."""
    try:
        ds = _open(blob, where)
    except ImageError as exc:
        return None, k, [_Unreadable(where, str(exc).removeprefix(f"{where}: "))]
    position = _slice_position(ds)
    headers[k] = _Header(radiological(ds), modality(ds),
                         str(ds.get("SeriesInstanceUID", "") or "").strip(), t2_header(ds))
    try:
        frames, info = _frames(ds, where, max_pixels, first_only=False)
        decoded = dict(zip(info["indices"], frames, strict=True))
        bad = dict(info["unreadable"])  # a multi-frame file's damaged frames keep their place
        return position, k, [decoded[i] if i in decoded else _Unreadable(where, bad[i + 1])
                             for i in slice_indices(info["frames"])]
    except ImageError as exc:
        try:
            n = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        except Exception:
            n = 1
        return position, k, [_Unreadable(where, str(exc).removeprefix(f"{where}: "))] * min(
            n, MAX_SLICES)


def _slice_position(ds: Any) -> float | None:
    """Where a slice lies along the series' normal (ImagePositionPatient projected on the
    normal of ImageOrientationPatient), else its InstanceNumber; None when neither is known."""
    try:
        pos = np.asarray([float(v) for v in ds.ImagePositionPatient])
        ori = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        return float(np.dot(pos, np.cross(ori[:3], ori[3:])))
    except Exception:
        pass
    try:
        return float(ds.InstanceNumber)
    except Exception:
        return None

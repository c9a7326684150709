"""DICOM decoding for `pipeline.images`: single and multi-frame files and zipped series.

Only pixels and geometry leave this module: no DICOM attribute (patient, institution, dates,
UIDs) is returned or put in a message, and member names of a zip are never reported.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline.images import ImageError, _check_dims, _scale_to_uint8

# A multi-frame DICOM or a zipped series: at most this many slices are kept, evenly spaced.
MAX_SLICES = 64
MAX_ZIP_MEMBERS = 2000  # files in a zipped series
MAX_ZIP_BYTES = 256 * 1024 * 1024  # what a zipped series may unpack to, in all


def _open(data: bytes, label: str) -> Any:
    """The parsed dataset; it never leaves this module (only pixels and geometry do)."""
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is in requirements.txt
        raise ImageError(f"{label}: DICOM support needs pydicom (pip install pydicom)") from None
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageError(f"{label}: corrupt DICOM ({type(exc).__name__})") from None


def _frames(ds: Any, label: str, max_pixels: int, first_only: bool
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Frames of a parsed DICOM as H×W×3 uint8 (rescaled and windowed), one decoded at a time;
    at most MAX_SLICES, evenly spaced, unless `first_only`."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageError(f"{label}: DICOM file has no pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n_frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except Exception:
        raise ImageError(f"{label}: DICOM file has no valid Rows/Columns") from None
    _check_dims(cols, rows, label, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    indices = [0] if first_only else _evenly_spaced(n_frames, MAX_SLICES)
    out = []
    try:
        for index in indices:
            arr = pixel_array(ds, index=index) if n_frames > 1 else ds.pixel_array
            if photometric.startswith("MONOCHROME"):
                arr = apply_modality_lut(arr, ds)  # rescale slope / intercept
                if "WindowCenter" in ds or "VOILUTSequence" in ds:
                    arr = apply_voi_lut(arr, ds, index=index)  # the scanner's window
                gray = _scale_to_uint8(arr)
                if photometric == "MONOCHROME1":  # bright means low signal: invert
                    gray = 255 - gray
                rgb = np.repeat(gray[:, :, None], 3, axis=2)
            else:
                if photometric.startswith("YBR"):
                    from pydicom.pixels import convert_color_space

                    arr = convert_color_space(arr, photometric, "RGB")
                if arr.ndim != 3 or arr.shape[-1] != 3:
                    raise ImageError(
                        f"{label}: unsupported DICOM pixel layout {arr.shape} ({photometric})")
                rgb = arr.astype(np.uint8) if arr.dtype.itemsize == 1 else _scale_to_uint8(arr)
            out.append(np.ascontiguousarray(rgb, dtype=np.uint8))
    except ImageError:
        raise
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise ImageError(
            f"{label}: cannot decode DICOM pixel data{hint}: {type(exc).__name__}") from None
    info = {"format": "DICOM", "mode": photometric, "width": cols, "height": rows,
            "frames": n_frames, "slices": len(out)}
    return out, info


def _evenly_spaced(n: int, most: int) -> list[int]:
    """Indices 0..n-1, or `most` of them evenly spaced (first and last kept)."""
    if n <= most:
        return list(range(n))
    return sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})


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


def decode_frames(data: bytes, label: str, max_pixels: int, first_only: bool = False
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The frames of one DICOM file (only the first if `first_only`), or ImageError."""
    return _frames(_open(data, label), label, max_pixels, first_only)


def frame_count(data: bytes | BinaryIO, label: str) -> int:
    """How many frames `decode_frames` would return, from the header alone (no pixel decoded
    and, from an open file, none read): NumberOfFrames, at most MAX_SLICES. ImageError for a
    file pydicom cannot parse."""
    import pydicom

    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        ds = pydicom.dcmread(src, force=True, stop_before_pixels=True)
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:
        raise ImageError(f"{label}: corrupt DICOM ({type(exc).__name__})") from None
    return max(1, min(n, MAX_SLICES))


def is_zip(data: bytes, name: str) -> bool:
    """Whether an upload is a zip (by its magic bytes or its name)."""
    return data[:4] == b"PK\x03\x04" or name.lower().endswith(".zip")


def decode_zip(data: bytes, label: str, max_pixels: int
                      ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A series uploaded as a zip of DICOM files: every slice, sorted along the series' axis.

    Member names are never reported (folders in a PACS export are often named after the
    patient); reads are bounded (MAX_ZIP_MEMBERS, MAX_ZIP_BYTES in all)."""
    import zipfile

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in zf.infolist() if not m.is_dir()
                   and not m.filename.startswith("__MACOSX/")
                   and not Path(m.filename).name.startswith(".")]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise ImageError(f"{label}: not a readable zip file") from None
    if not members:
        raise ImageError(f"{label}: the zip holds no files")
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageError(f"{label}: the zip holds {len(members)} files (at most "
                         f"{MAX_ZIP_MEMBERS} slices per series)")
    budget = MAX_ZIP_BYTES
    found: list[tuple[float | None, int, list[np.ndarray]]] = []
    not_dicom = 0
    for k, member in enumerate(members):
        try:
            with zf.open(member) as fh:
                blob = fh.read(budget + 1)
        except RuntimeError:  # encrypted
            raise ImageError(f"{label}: the zip is password-protected") from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise ImageError(f"{label}: the zip is damaged (a member cannot be read)") from None
        budget -= len(blob)
        if budget < 0:
            raise ImageError(f"{label}: the zip unpacks to more than "
                             f"{MAX_ZIP_BYTES / 1e6:.0f} MB")
        if blob[128:132] != b"DICM" and not member.filename.lower().endswith(".dcm"):
            not_dicom += 1
            continue
        ds = _open(blob, f"{label}: slice file {k + 1}")
        frames, _ = _frames(ds, f"{label}: slice file {k + 1}", max_pixels,
                                  first_only=False)
        found.append((_slice_position(ds), k, frames))
        del ds, blob
    if not_dicom:
        raise ImageError(f"{label}: {not_dicom} of the {len(members)} files in the zip are not "
                         "DICOM; upload a zip of .dcm slices only")
    if all(pos is not None for pos, _, _ in found):
        found.sort(key=lambda t: (t[0], t[1]))
    slices = [f for _, _, frames in found for f in frames]
    total = len(slices)
    slices = [slices[i] for i in _evenly_spaced(total, MAX_SLICES)]
    info = {"format": "DICOM series", "mode": "", "width": slices[0].shape[1],
            "height": slices[0].shape[0], "frames": total, "slices": len(slices)}
    return slices, info

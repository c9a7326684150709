"""NIfTI volumes (.nii, .nii.gz) for `pipeline.images`: a researcher's volume as a series of
axial slices, as a multi-frame DICOM is one.

nibabel reads the file (NIfTI-1 or NIfTI-2, gzipped or not; an Analyze .hdr/.img pair is two
files and is not read). The volume's affine says which voxel axis lies closest to the
patient's superior-inferior axis (`nibabel.io_orientation`, what `nibabel.aff2axcodes` names:
"RAS", "LPS", ...); the slices are taken across it, from inferior to superior (a DICOM series'
order along its normal), and each is shown as the project shows an axial DICOM slice, in the
radiological convention: the patient's right on the picture's left, anterior at the top.

An oblique volume (voxel axes not aligned with the patient's) is not resampled: its slices are
the voxel planes nearest to axial, tilted by the obliquity, as acquired. A volume without a
usable affine (not finite, or singular) is sliced across its third axis, as stored.

Intensities: one window for the volume, `images._scale_to_uint8` (the DICOM path's scaling:
the minimum to the top below hot voxels) over the analysed slices together, so slices keep their
relative brightness and an empty slice outside the head stays blank (and is left out,
`images.without_blank`). Pixels are made square when the slice plane's voxel sizes differ. A
4-D volume (fMRI, diffusion): its first volume only, `info["volumes"]` says how many it holds.
At most `dicom.MAX_SLICES` slices, evenly spaced (`dicom.slice_indices`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import warnings
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from pipeline.images import (
    MAX_DECODE_SIDE,
    MAX_FILE_BYTES,
    ImageError,
    _check_dims,
    _scale_to_uint8,
)
from pipeline.names import NIFTI_EXTS, file_ext

GZIP_MAGIC = b"\x1f\x8b"
_HEADER_BYTES = 540  # a NIfTI-2 header; NIfTI-1's is 348


def is_nifti(data: bytes, name: str) -> bool:
    """Whether a file is NIfTI: by its name (.nii, .nii.gz), or an uncompressed one by its
    magic ("n+1" at byte 344, "n+2" at byte 4)."""
    return file_ext(name) in NIFTI_EXTS or data[344:348] == b"n+1\x00" or (
        data[4:8] == b"n+2\x00")


def _unpacked(src: bytes | BinaryIO, label: str, most: int) -> bytes:
    """The file's bytes, gunzipped when gzipped; at most `most` of them (a header) or the whole
    file up to MAX_FILE_BYTES unpacked (ImageError beyond: a gzip bomb)."""
    fh = io.BytesIO(src) if isinstance(src, bytes) else src
    start = fh.read(2)
    fh.seek(0)
    if start != GZIP_MAGIC:
        return fh.read(most)
    try:
        with gzip.GzipFile(fileobj=fh) as gz:
            raw = gz.read(min(most, MAX_FILE_BYTES + 1))
    except (OSError, EOFError, zlib.error) as exc:
        why = "cut short" if isinstance(exc, EOFError) else "damaged"
        raise ImageError(f"{label}: {why} .nii.gz (it cannot be unpacked)") from None
    if most > MAX_FILE_BYTES and len(raw) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: the volume unpacks to more than "
                         f"{MAX_FILE_BYTES / 1e6:.0f} MB")
    return raw


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """nibabel says what it fixes or refuses in a header through its logger ("sizeof_hdr should
    be 348; ...") and warnings: stray lines on stderr. Our ImageError says it in one line."""
    from nibabel.imageglobals import logger

    # nibabel's LoggingOutputSuppressor removes the handler, and Python's last-resort handler
    # then prints the line anyway: the logger itself is switched off
    was, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = was


def _image(raw: bytes, label: str) -> Any:
    """The nibabel image (NIfTI-1 or -2 by its header's size), or a one-line ImageError."""
    import nibabel

    kind = nibabel.Nifti2Image if raw[4:8] == b"n+2\x00" or _sizeof_hdr(raw) == 540 else (
        nibabel.Nifti1Image)
    try:
        with _quiet():
            return kind.from_bytes(raw)
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, struct errors...
        raise ImageError(f"{label}: not a readable NIfTI volume ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    """nibabel's reason, its first line cut to `dicom.REASON_CHARS` (one line, never a dump)."""
    from pipeline.dicom import REASON_CHARS

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 1].rstrip() + "…"


def _sizeof_hdr(raw: bytes) -> int:
    """The header's own size field (348 or 540), in either byte order; 0 when too short."""
    if len(raw) < 4:
        return 0
    little, big = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")
    return little if little in (348, 540) else big


def volume_slices(src: bytes | BinaryIO, label: str) -> tuple[int, int]:
    """How many axial slices the volume holds, and how many volumes (a 4-D file's; the first
    is read), from its header alone (no voxel is read): `series.expand_series` counts a file's
    slices before anything is read. ImageError for a file whose header cannot be read."""
    header = _image_header(_unpacked(src, label, _HEADER_BYTES), label)
    shape = header.get_data_shape()
    if len(shape) < 2:
        raise ImageError(f"{label}: a NIfTI volume of shape {shape} holds no slice")
    volumes = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if len(shape) == 2:
        return 1, volumes
    return int(shape[_axial_axis(header.get_best_affine())]), volumes


def _image_header(raw: bytes, label: str) -> Any:
    import nibabel

    kind = nibabel.Nifti2Header if _sizeof_hdr(raw) == 540 else nibabel.Nifti1Header
    try:
        with _quiet():
            return kind.from_fileobj(io.BytesIO(raw))
    except Exception as exc:
        raise ImageError(f"{label}: not a readable NIfTI volume ({_reason(exc)})") from None


def _orientation(affine: np.ndarray) -> np.ndarray | None:
    """nibabel's io_orientation: per voxel axis, (patient axis 0 R, 1 A, 2 S; direction), or
    None when the affine is unusable (then the volume is taken as stored)."""
    from nibabel.orientations import io_orientation

    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        return None
    try:
        ornt = io_orientation(a)
    except Exception:
        return None
    return None if np.isnan(ornt).any() else ornt


def _axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to superior-inferior (the third when the affine is unusable)."""
    ornt = _orientation(affine)
    if ornt is None:
        return 2
    return int(np.flatnonzero(ornt[:3, 0] == 2)[0])


def decode_volume(data: bytes, label: str, max_pixels: int
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A NIfTI volume's axial slices as H×W×3 uint8 (module docstring), inferior first; at most
    MAX_SLICES, evenly spaced (`info["indices"]`, places in the volume). `info["volumes"]`:
    how many volumes a 4-D file holds (the first is read); `info["orientation"]`: the
    affine's axis codes ("RAS"; "" when unusable); `info["radiological"]`: whether the
    patient's right is known to be on the picture's left (a usable affine). ImageError in one
    line otherwise."""
    from nibabel.orientations import apply_orientation, ornt2axcodes

    from pipeline.dicom import slice_indices

    img = _image(_unpacked(data, label, MAX_FILE_BYTES + 1), label)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or min(shape[:3]) < 1:
        raise ImageError(f"{label}: a NIfTI volume of shape {shape} holds no slice")
    volumes = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    try:  # the first volume only: a 4-D file's others are never scaled into memory
        first = (slice(None),) * min(3, len(shape)) + (0,) * (len(shape) - 3)
        with _quiet():
            vol = np.asarray(img.dataobj[first], dtype=np.float32)
    except Exception as exc:
        raise ImageError(f"{label}: the NIfTI volume's voxels cannot be read "
                         f"({_reason(exc)})") from None
    if vol.ndim == 2:
        vol = vol[:, :, None]
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * (3 - min(3, len(shape)))
    ornt = _orientation(img.affine)
    codes = "" if ornt is None else "".join(ornt2axcodes(ornt))
    if ornt is not None:  # voxel axes to R, A, S, each increasing toward them
        vol = apply_orientation(vol, ornt)
        zooms = [zooms[int(np.flatnonzero(ornt[:, 0] == k)[0])] for k in range(3)]
    nx, ny, nz = vol.shape
    _check_dims(nx, ny, label, max_pixels)
    kept = slice_indices(nz)
    # radiological: rows from anterior to posterior, columns from the patient's right to left
    planes = np.stack([vol[::-1, ::-1, k].T for k in kept])
    grey = _scale_to_uint8(planes)  # one window for every slice analysed
    slices = [_square(g, zooms[0], zooms[1]) for g in grey]
    info = {"format": "NIfTI", "mode": codes, "width": slices[0].shape[1],
            "height": slices[0].shape[0], "frames": nz, "slices": len(slices),
            "indices": kept, "unreadable": [], "volumes": volumes, "orientation": codes,
            # the patient's sides known and shown radiologically (`names.sides_words`); a
            # volume without a usable affine is taken as stored: its sides are unknown
            "radiological": bool(codes)}
    return slices, info


def _square(grey: np.ndarray, col_mm: float, row_mm: float) -> np.ndarray:
    """A slice as RGB, stretched to square pixels when its voxel sizes differ by over 1 %
    (a picture of 1×2 mm voxels would look squashed); the longer side kept within
    MAX_DECODE_SIDE."""
    import cv2

    h, w = grey.shape
    if col_mm > 0 and row_mm > 0 and abs(col_mm / row_mm - 1) > 0.01:
        unit = min(col_mm, row_mm)
        size = [max(1, round(w * col_mm / unit)), max(1, round(h * row_mm / unit))]
        scale = min(1.0, MAX_DECODE_SIDE / max(size))
        grey = cv2.resize(grey, (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                          interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))

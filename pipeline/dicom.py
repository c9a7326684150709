"""DICOM decoding for `pipeline.images`: single and multi-frame files (zipped series:
`pipeline.dicom_zip`).

Only pixels, geometry, the Modality code and verdicts drawn from the header (`radiological`,
`t2_header`) leave this module: no other DICOM attribute (patient, institution, dates, UIDs) is
returned or put in a message, and member names of a zip are never reported.
"""

from __future__ import annotations

import contextlib
import io
import struct
from typing import Any, BinaryIO

import numpy as np

from pipeline.images import ImageError, _check_dims, _scale_to_uint8

# A multi-frame DICOM or a zipped series: at most this many slices are kept, evenly spaced.
MAX_SLICES = 64
REASON_CHARS = 150  # a decoder's message, cut to this in a failure's one line


def _open(data: bytes, label: str) -> Any:
    """The parsed dataset; it never leaves this module (only pixels and geometry do)."""
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is in requirements.txt
        raise ImageError(f"{label}: DICOM support needs pydicom (pip install pydicom)") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageError(f"{label}: corrupt DICOM ({type(exc).__name__})") from None
    if data[128:132] != b"DICM" and not _has_pixels(ds) and "Rows" not in ds:
        # force=True makes a "dataset" of any bytes: a JPEG renamed .dcm parsed as garbage
        raise ImageError(f"{label}: not a DICOM file (no DICOM header; another image format "
                         "named .dcm?)")
    _assume_transfer_syntax(ds)
    return ds


def _has_pixels(ds: Any) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _assume_transfer_syntax(ds: Any) -> None:
    """A dataset without file meta (no 128-byte preamble, no group 0002) is legal but pydicom
    cannot decode its pixels without a transfer syntax: take the encoding it was read with
    (such a file cannot hold compressed pixels)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    syntax = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
              (False, False): ExplicitVRBigEndian}.get((implicit, little))
    if syntax is None:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax


def _syntax(ds: Any) -> Any:
    """The dataset's transfer syntax (a pydicom UID), or None."""
    return getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)


def _is(syntax: Any, prop: str) -> bool:
    """`syntax.is_compressed` and the like, False for a UID that is no transfer syntax (pydicom
    raises ValueError there, which would escape the one-line failure)."""
    try:
        return syntax is not None and bool(getattr(syntax, prop))
    except ValueError:
        return False


def _frames_held(ds: Any, length: int | None, fragments: int | None) -> int | None:
    """How many whole frames pixel data of `length` bytes (native) or of `fragments` fragments
    (compressed: a fragment never holds parts of two frames) can hold; None when unknown."""
    if fragments is not None:
        return fragments
    if length is None:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = (32 if "FloatPixelData" in ds else 64 if "DoubleFloatPixelData" in ds
                else int(ds.BitsAllocated))
    except Exception:
        return None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        samples = 2  # two luminance samples share one pair of chrominance samples
    frame_bits = rows * cols * samples * bits  # BitsAllocated 1: frames are packed bit by bit
    return length * 8 // frame_bits if frame_bits > 0 else None


def _check_frames(ds: Any, n_frames: int, held: int | None, label: str) -> None:
    """ImageError, once for the whole file, when its pixel data holds fewer frames than its
    header declares (truncated, or a damaged NumberOfFrames): every frame would fail alike."""
    if held is not None and held < n_frames:
        raise ImageError(f"{label}: damaged DICOM: its pixel data holds {held} of the "
                         f"{n_frames} frames its header declares")


def _check_decoder(ds: Any, label: str) -> None:
    """ImageError when no installed plugin can decode the file's compressed transfer syntax."""
    syntax = _syntax(ds)
    if not _is(syntax, "is_compressed"):
        return
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):  # a syntax pydicom has no decoder for at all
        available = False
    if not available:
        raise ImageError(f"{label}: {_no_decoder(syntax)}")


def _no_decoder(syntax: Any) -> str:
    """A missing decoder, with what to install or how to convert the file."""
    from pydicom import uid

    if syntax in uid.JPEG2000TransferSyntaxes or syntax.name.startswith("High-Throughput"):
        fix = "install pylibjpeg and pylibjpeg-openjpeg, or convert the file with gdcmconv --raw"
    elif syntax in uid.JPEGLSTransferSyntaxes:
        fix = "install pylibjpeg and pylibjpeg-libjpeg, or convert the file with dcmdjpls"
    elif syntax in uid.JPEGTransferSyntaxes:
        fix = "install pylibjpeg and pylibjpeg-libjpeg, or convert the file with dcmdjpeg"
    else:
        fix = "convert the file to an uncompressed transfer syntax, e.g. with gdcmconv --raw"
    return f"no decoder installed for {syntax.name} ({fix})"


def _decode_failure(exc: Exception, ds: Any) -> str:
    """Why a frame could not be decoded, in one line: a missing decoder named with its fix,
    else the first line of the exception's message (pydicom's own reason)."""
    syntax = _syntax(ds)
    text = str(exc)
    # pydicom: "... all plugins are missing dependencies"; Pillow, the one JPEG plugin here:
    # "Pillow does not support 'JPEG Extended' for samples with 12-bit precision"
    if _is(syntax, "is_compressed") and (
            "missing dependencies" in text or "does not support" in text):
        return _no_decoder(syntax)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if reason.endswith(":") and len(lines) > 1:  # "raised by all available plugins:\n  pillow: …"
        reason = f"{reason} {lines[1]}"
    if len(reason) > REASON_CHARS:
        reason = reason[:REASON_CHARS - 1].rstrip() + "…"
    hint = f" (transfer syntax {syntax.name})" if syntax is not None else ""
    return f"cannot decode DICOM pixel data{hint}: {reason}"


def _pixel_fragments(ds: Any) -> int | None:
    """Fragments of compressed pixel data held in memory; None for native pixel data."""
    if "PixelData" not in ds or not ds["PixelData"].is_undefined_length:
        return None
    from pydicom.encaps import parse_fragments

    try:  # the first item is the Basic Offset Table (parse_fragments counts it)
        return max(0, int(parse_fragments(ds.PixelData)[0]) - 1)
    except Exception:  # not even its items parse: as good as no frame
        return 0


def _native_length(ds: Any) -> int | None:
    """Bytes of native pixel data held in memory; None for compressed pixel data."""
    for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if key in ds:
            elem = ds[key]
            return None if elem.is_undefined_length else len(elem.value or b"")
    return None


def _window_usable(ds: Any) -> bool:
    """Whether the scanner's VOI window can be applied: pydicom refuses a window narrower than 1
    (0 exact for LINEAR_EXACT), which some exports write; the image then keeps min/max
    scaling rather than being refused."""
    if "VOILUTSequence" in ds:
        return True
    from pydicom.multival import MultiValue

    try:
        width = ds.WindowWidth
        width = float(width[0] if isinstance(width, MultiValue) else width)  # pydicom's choice
    except Exception:
        return False
    exact = str(ds.get("VOILUTFunction", "")).upper() == "LINEAR_EXACT"
    return width > 0 if exact else width >= 1


def _frames(ds: Any, label: str, max_pixels: int, first_only: bool
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Frames of a parsed DICOM as H×W×3 uint8 (rescaled and windowed), one decoded at a time;
    at most MAX_SLICES, evenly spaced, unless `first_only`. A frame that cannot be decoded is
    left out, its number and reason in `info["unreadable"]` (`indices` keeps the frames
    returned), as a multi-page TIFF's page is; ImageError (the first failure) when none can."""
    if not _has_pixels(ds):
        raise ImageError(f"{label}: DICOM file has no pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n_frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except Exception:
        raise ImageError(f"{label}: DICOM file has no valid Rows/Columns") from None
    _check_dims(cols, rows, label, max_pixels)
    _check_frames(ds, n_frames, _frames_held(ds, _native_length(ds), _pixel_fragments(ds)), label)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    out, kept, unreadable = [], [], []
    first: ImageError | None = None
    for index in [0] if first_only else slice_indices(n_frames):
        try:
            out.append(_frame(ds, index, n_frames, photometric, label))
            kept.append(index)
        except ImageError as exc:  # one damaged frame (a garbled fragment) costs that frame
            first = first or exc
            unreadable.append((index + 1, str(exc).removeprefix(f"{label}: ")))
    if not out:
        assert first is not None
        raise first
    info = {"format": "DICOM", "mode": photometric, "width": cols, "height": rows,
            "frames": n_frames, "slices": len(out), "indices": kept, "unreadable": unreadable,
            "radiological": radiological(ds), "modality": modality(ds),
            "t2_header": t2_header(ds)}
    return out, info


def t2_header(ds: Any) -> bool:
    """Whether an MR file's echo or inversion time says T2-weighted or FLAIR
    (`modality.t2_by_times`): EchoTime and InversionTime, or an enhanced file's
    EffectiveEchoTime and InversionTimes in its shared functional groups or its first frame's
    (a review found the per-frame ones missed); False for another modality or where the
    header does not say."""
    from pipeline.modality import DICOM_MR, t2_by_times

    if modality(ds) not in ("", DICOM_MR):
        return False
    echo, inversion = _number(ds.get("EchoTime")), _number(ds.get("InversionTime"))
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        with contextlib.suppress(Exception):
            echo = echo if echo is not None else _number(
                ds.get(groups)[0].MREchoSequence[0].EffectiveEchoTime)
        with contextlib.suppress(Exception):
            inversion = inversion if inversion is not None else _number(
                ds.get(groups)[0].MRModifierSequence[0].InversionTimes)
    return t2_by_times(echo, inversion)


def _number(value: Any) -> float | None:
    """A header's number (a multi-valued one: its first), None where there is none."""
    from pydicom.multival import MultiValue

    try:
        return float(value[0] if isinstance(value, MultiValue) else value)
    except Exception:
        return None


def modality(ds: Any) -> str:
    """The file's Modality code ("MR", "CT", ...; `pipeline.modality.may_be_ct` trusts "MR"
    and "CT"), upper-case; "" when the tag is absent or no code (a code names the kind of
    scanner, never the patient, so it may leave this module)."""
    code = str(ds.get("Modality", "") or "").strip().upper()
    return code if code.isalnum() and len(code) <= 16 else ""  # DICOM's CS: at most 16


def radiological(ds: Any) -> bool:
    """Whether the image's rows run toward the patient's left (ImageOrientationPatient's row
    cosines mostly along +x, DICOM's patient frame being LPS), so the patient's right is on
    the picture's left, as the project shows a NIfTI slice (`names.sides_words`). False when
    the tag is absent (an enhanced multi-frame file's shared one is read too) or says
    otherwise: a sagittal slice's left and right are front and back. Only this verdict
    leaves: no attribute is returned."""
    try:
        ori = ds.get("ImageOrientationPatient")
        if ori is None:
            plane = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
            ori = plane.ImageOrientationPatient
        x, y, z = (float(v) for v in list(ori)[:3])
    except Exception:
        return False
    return x > max(abs(y), abs(z))


def _frame(ds: Any, index: int, n_frames: int, photometric: str, label: str) -> np.ndarray:
    """Frame `index` of a parsed DICOM as H×W×3 uint8 (rescaled and windowed), or ImageError
    with the decoder's reason."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    try:
        arr = pixel_array(ds, index=index) if n_frames > 1 else ds.pixel_array
        if photometric.startswith("MONOCHROME"):
            arr = apply_modality_lut(arr, ds)  # rescale slope / intercept
            if ("WindowCenter" in ds or "VOILUTSequence" in ds) and _window_usable(ds):
                arr = apply_voi_lut(arr, ds, index=index)  # the scanner's window
            gray = _scale_to_uint8(arr)
            if photometric == "MONOCHROME1":  # bright means low signal: invert
                gray = 255 - gray
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2), dtype=np.uint8)
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
    except Exception as exc:
        raise ImageError(f"{label}: {_decode_failure(exc, ds)}") from None
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ImageError(f"{label}: unsupported DICOM pixel layout {arr.shape} ({photometric})")
    rgb = arr.astype(np.uint8) if arr.dtype.itemsize == 1 else _scale_to_uint8(arr)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def slice_indices(total: int) -> list[int]:
    """Which of a file's `total` frames (or a zip's slices) are decoded, 0-based: all of them,
    or MAX_SLICES evenly spaced. Labels name a slice by its place among the `total`."""
    return _evenly_spaced(total, MAX_SLICES)


def _evenly_spaced(n: int, most: int) -> list[int]:
    """Indices 0..n-1, or `most` of them evenly spaced (first and last kept)."""
    if n <= most:
        return list(range(n))
    return sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})


def decode_frames(data: bytes, label: str, max_pixels: int, first_only: bool = False
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The frames of one DICOM file (only the first if `first_only`), or ImageError."""
    return _frames(_open(data, label), label, max_pixels, first_only)


def header_frames(data: bytes | BinaryIO, label: str) -> int:
    """How many frames a DICOM file holds (NumberOfFrames), from its header alone: no pixel is
    decoded and, from an open file, none read (its pixel data's length and, compressed, its
    fragments' item headers are). ImageError for a file pydicom cannot parse, pixel data
    shorter than its frames, or a compressed file no installed plugin decodes: the file is
    then refused once, not once per frame."""
    import pydicom

    src = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        ds = pydicom.dcmread(src, force=True, stop_before_pixels=True)
        n = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except Exception as exc:
        raise ImageError(f"{label}: corrupt DICOM ({type(exc).__name__})") from None
    if n > 1:
        _assume_transfer_syntax(ds)
        _check_decoder(ds, label)
        implicit, little = getattr(ds, "original_encoding", (None, None))
        syntax = _syntax(ds)
        try:
            if little is None or _is(syntax, "is_deflated"):
                raise ValueError("the file's position is not the pixel data's")
            length, fragments = _stored_pixels(src, bool(implicit), "<" if little else ">")
        except (OSError, ValueError, struct.error):
            length, fragments = None, None  # decoding will say what is wrong
        _check_frames(ds, n, _frames_held(ds, length, fragments), label)
    return n


# (7FE0,0010) PixelData, (7FE0,0008) FloatPixelData, (7FE0,0009) DoubleFloatPixelData
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}
_UNDEFINED = 0xFFFFFFFF


def _stored_pixels(fh: BinaryIO, implicit: bool, order: str) -> tuple[int | None, int | None]:
    """(bytes of native pixel data, None) or (None, fragments of compressed pixel data) for the
    element at the file's position, where `dcmread(stop_before_pixels=True)` leaves it; (None,
    None) when no pixel data element is there. A file cut short counts only what it holds."""
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or struct.unpack(order + "HH", head[:4]) not in _PIXEL_TAGS:
        return None, None
    if implicit:
        (length,), offset = struct.unpack(order + "I", head[4:8]), 8
    elif head[4:6] in _LONG_VRS and len(head) == 12:  # explicit VR: 2 reserved bytes, length
        (length,), offset = struct.unpack(order + "I", head[8:12]), 12
    else:
        return None, None
    end = fh.seek(0, io.SEEK_END)
    if length != _UNDEFINED:
        return min(length, max(0, end - start - offset)), None
    pos, items = start + offset, 0
    while pos + 8 <= end:  # items: (FFFE,E000) + length, until (FFFE,E0DD)
        fh.seek(pos)
        group, elem, size = struct.unpack(order + "HHI", fh.read(8))
        if (group, elem) != (0xFFFE, 0xE000) or size == _UNDEFINED or pos + 8 + size > end:
            break  # the delimiter, or damage: the items so far are what decoding can use
        items += 1
        pos += 8 + size
    return None, max(0, items - 1)  # the first item is the Basic Offset Table

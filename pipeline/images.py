"""Robust image decoding, shared by training, the CLI and the dashboard.

Every file or upload goes through `decode_image`, which either returns an H×W×3 uint8 RGB array or
raises `ImageError` with a message naming the file and the problem. Pillow decodes the raster
formats (JPEG, PNG, BMP, TIFF, GIF, WebP, PPM); pydicom decodes DICOM (`pipeline.dicom`). No
exception from a decoder escapes unwrapped: a corrupt upload must never take the dashboard or
a training run down. Cropping to the head and resizing for a model live in `pipeline.geometry`.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # refuse larger images from their header, before decoding (bomb guard)
# A 50-megapixel 16-bit RGB TIFF is 300 MB uncompressed; nothing usable is larger than this.
MAX_FILE_BYTES = 512 * 1024 * 1024
# A folder reaches the CLI's reader only when `stream.expand_inputs` found nothing in it to read
# ("is a folder, not an image" told a user who had passed a folder, as the help invites, wrong)
FOLDER_MESSAGE = ("a folder with no image in it (JPEG, PNG, BMP, TIFF, GIF, WebP, PPM or DICOM "
                  "files, .zip series of .dcm slices or NIfTI volumes, searched recursively)")
FOLDER_NOT_FILE = ("is a folder, not one image file (pipeline.stream.expand_inputs lists the "
                   "images in a folder, as predict and explain search the folders they are given)")
MIN_SIDE = 8  # smaller images carry no usable anatomy
# Larger images are shrunk *while* decoding (JPEG's DCT scaling, then Pillow's reduce) before any
# conversion: a 190 KB zero-filled 7000×7000 PNG peaked at 1.31 GB when converted at full size.
# Models see at most 224 px and MRI slices are rarely over 1 k px, so nothing usable is lost.
MAX_DECODE_SIDE = 2048
# Raster formats we accept. Limiting Pillow to these keeps it away from formats that shell out
# (EPS calls Ghostscript) or that make no sense for MRI slices.
PIL_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF", "GIF", "WEBP", "PPM")
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# Never decode a truncated file silently into a half-grey image: Pillow must raise instead.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """A file or upload that is not a usable image. The message names the file and the reason."""


_FORMATS_READY: list[str] = []
_FORMATS_LOCK = threading.Lock()


def _pil_formats() -> list[str]:
    """PIL_FORMATS whose plugins this Pillow has (Image.init registers all of them once)."""
    with _FORMATS_LOCK:
        if not _FORMATS_READY:
            Image.init()
            _FORMATS_READY.extend(f for f in PIL_FORMATS if f in Image.OPEN)
        return list(_FORMATS_READY)


def _label(name: str) -> str:
    return name or "image"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:g}"


def _check_dims(width: int, height: int, label: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: image too large: {width}×{height} exceeds "
            f"{_megapixels(max_pixels)} megapixels"
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(
            f"{label}: {width}×{height} image is too small (minimum {MIN_SIDE}×{MIN_SIDE})"
        )


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


# how common image formats begin: a file named .dcm that begins like one is that image
# (a JPEG renamed .dcm was refused as "DICOM file has no pixel data")
OTHER_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"GIF8", b"II*\x00", b"MM\x00*", b"RIFF")


def _is_dicom(data: bytes, name: str) -> bool:
    """DICOM by its magic, or by a .dcm name unless the bytes say another format (a DICOM
    without its 128-byte preamble has no magic; pydicom still reads it)."""
    if data[128:132] == b"DICM":
        return True
    return name.lower().endswith(".dcm") and not data.startswith(OTHER_MAGIC)


def _scale_to_uint8(arr: np.ndarray, quantile: float = 99.9, outlier: float = 2.0
                    ) -> np.ndarray:
    """Map the actual value range of a high-bit image to 0-255 (12-bit MRI in 16-bit files).

    The bottom is the minimum (an MRI's background). The top is the maximum unless a few values
    lie far above the rest: values more than `outlier` times the `quantile`-th percentile's
    distance from the minimum are hot pixels, and the top is the largest value below them; they
    are clipped to 255. One 65535 pixel in a 12-bit slice turned the slice into greys 0-4 (and a
    glioma answer of 1.00 into 0.29); an image without such values maps exactly as before.
    """
    arr = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    values = arr[finite]
    lo, hi = float(values.min()), float(values.max())
    cut = lo + outlier * (float(np.percentile(values, quantile)) - lo)
    if hi > cut:
        below = float(values[values <= cut].max())
        # content in fewer than 0.1 % of the pixels (a dot on a flat field) is no outlier
        hi = below if below > lo else hi
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = (np.where(finite, arr, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> H×W×3 uint8; alpha is composited on black."""
    mode = im.mode
    if mode in _HIGH_BIT_MODES:
        gray = _scale_to_uint8(np.asarray(im))
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        return on_black(np.asarray(im.convert("RGBA")))
    if mode in ("1", "L", "P;L"):
        gray = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def on_black(rgba: np.ndarray) -> np.ndarray:
    """An H×W×4 uint8 RGBA array's colour composited on black (multiplied by alpha, rounded):
    how transparency is read, in a file or an array (`geometry.as_rgb_uint8`)."""
    wide = rgba.astype(np.uint16)
    return ((wide[:, :, :3] * wide[:, :, 3:4] + 127) // 255).astype(np.uint8)


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded Pillow image as H×W×3 uint8, as decoding reads a file: turned as its EXIF
    orientation says, then any mode converted (`_to_rgb_array`). Not shrunk or size-checked."""
    try:
        oriented = ImageOps.exif_transpose(im)  # a copy: the caller's image stays as it is
    except Exception:  # a malformed EXIF block must not make a good image unreadable
        oriented = None
    return _to_rgb_array(im if oriented is None else oriented)


def _explain_pillow_error(exc: Exception, fmt: str | None, label: str) -> ImageError:
    text = str(exc)
    kind = fmt or "image"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        # not Pillow's words: "(7 bytes not processed)" read as if almost nothing were missing
        return ImageError(f"{label}: truncated {kind}: the file is cut short or damaged; copy "
                          "or export it again")
    if isinstance(exc, MemoryError):
        return ImageError(f"{label}: not enough memory to decode this {kind}")
    return ImageError(f"{label}: corrupt {kind} ({type(exc).__name__}: {text})")


def _load_reduced(im: Image.Image, info: dict[str, Any]) -> Image.Image:
    """Load `im` with its longer side at most MAX_DECODE_SIDE, shrinking as early as possible.

    JPEG decodes straight at 1/2, 1/4 or 1/8 size (`draft`); other formats are reduced by an
    integer factor right after loading, before any mode conversion multiplies the memory.
    `info["reduced_by"]` records the factor (1: full size).
    """
    factor = -(-max(im.size) // MAX_DECODE_SIDE)  # ceil
    if factor > 1 and im.format in ("JPEG", "MPO"):
        im.draft(im.mode, (im.size[0] // factor, im.size[1] // factor))
    im.load()
    factor = -(-max(im.size) // MAX_DECODE_SIDE)
    if factor > 1:
        try:
            reduced = im.reduce(factor)
        except (ValueError, NotImplementedError):  # palette, 1-bit, some 16-bit modes
            size = (max(1, im.size[0] // factor), max(1, im.size[1] // factor))
            reduced = im.resize(size, Image.Resampling.NEAREST)
        im.close()
        im = reduced
    info["reduced_by"] = round(info["width"] / im.size[0], 3)
    return im


def _decode_pillow(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        # The caller silences Pillow's DecompressionBombWarning: our own, lower cap follows.
        im = Image.open(io.BytesIO(data), formats=_pil_formats())
    except Image.DecompressionBombError:  # not Pillow's "... decompression bomb DOS attack"
        raise ImageError(f"{label}: image too large: over {_megapixels(max_pixels)} "
                         "megapixels") from None
    except UnidentifiedImageError:
        if _looks_like_text(data):
            raise ImageError(f"{label}: not an image (text?)") from None
        raise ImageError(
            f"{label}: not an image (unrecognised format; accepted: JPEG, PNG, BMP, TIFF, "
            f"GIF, WebP, PPM, DICOM)"
        ) from None
    except Exception as exc:  # Pillow plugins raise many types on malformed headers
        raise _explain_pillow_error(exc, None, label) from None
    fmt = im.format
    try:
        width, height = im.size
        _check_dims(width, height, label, max_pixels)
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        if n_frames > 1:
            im.seek(0)  # animated GIF / multi-page TIFF: first frame
        info = {"format": fmt, "mode": im.mode, "width": width, "height": height,
                "frames": n_frames}
        im = _load_reduced(im, info)
        arr = pil_to_rgb(im)
    except ImageError:
        raise
    except Exception as exc:
        raise _explain_pillow_error(exc, fmt, label) from None
    finally:
        im.close()
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < MIN_SIDE or arr.shape[1] < MIN_SIDE:
        raise ImageError(f"{label}: decoded to an unusable array of shape {arr.shape}")
    return arr, info


def decode_slices(data: bytes, name: str = "", max_pixels: int | None = None
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Every slice of an upload: the frames of a multi-frame DICOM, the slices of a zip of DICOM
    files (sorted by position along the series' axis, else by instance number), the pages of a
    multi-page TIFF (a viewer's stack: `tiff_stack.decode_pages`), the axial slices of a NIfTI
    volume (`nifti.decode_volume`), or the one image of any other file. At most MAX_SLICES,
    evenly spaced (`info["frames"]`: how many there were, `info["slices"]`: how many are
    returned); blank slices left out (`without_blank`). Only pixels leave: no DICOM attribute
    (patient, institution, dates, UIDs) is returned or put in a message. ImageError
    otherwise."""
    # they import this module's errors and helpers
    from pipeline import dicom, dicom_zip, nifti, tiff_stack

    label = _label(name)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if isinstance(data, bytes) and data:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dicom_zip.is_zip(data, name):
                return without_blank(*dicom_zip.decode_zip(data, label, max_pixels), label)
            if _is_dicom(data, name):
                return without_blank(*dicom.decode_frames(data, label, max_pixels), label)
            if nifti.is_nifti(data, name):
                return without_blank(*nifti.decode_volume(data, label, max_pixels), label)
            pages = tiff_stack.decode_pages(data, label, max_pixels)
            if pages is not None:
                return without_blank(*pages, label)
    image, info = decode_image_info(data, name, max_pixels)
    return [refuse_blank(image, label)], {**info, "slices": 1}


def refuse_blank(image: np.ndarray, label: str) -> np.ndarray:
    """`image`, or ImageError when it is blank (`modality.is_blank`): for a file to classify,
    never a mask (an empty mask is blank, and valid). A series' slices: `without_blank`."""
    from pipeline.modality import BLANK_REASON, is_blank

    if is_blank(image):
        raise ImageError(f"{label}: {BLANK_REASON}")
    return image


# why a blank slice of a series has no answer ("scan.dcm · slice 3 of 20: <this>")
BLANK_SLICE = "blank (almost all one grey level), not analysed"


def blank_failure(reason: str) -> str | None:
    """What a failure's `reason` (an ImageError's text) says is blank: "slice" for a series'
    blank slice, left out while the others are answered (`BLANK_SLICE`), "file" for a file
    with nothing to classify (a blank image, a series whose every slice is blank:
    `modality.BLANK_WHY`), None for any other failure (a file that cannot be read)."""
    from pipeline.modality import BLANK_WHY

    if reason.endswith(f": {BLANK_SLICE}"):
        return "slice"
    return "file" if reason.endswith(BLANK_WHY) else None


def without_blank(slices: list[np.ndarray], info: dict[str, Any], label: str
                  ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A decoded series without its blank slices (`modality.is_blank`: the padding slices
    outside the head at a series' ends were answered "no tumour"): their places in the file,
    1-based, in `info["blank"]`, `indices`, `slices` and per-slice lists ("slice_...") keeping
    the others. ImageError, in one line, when no slice is left. Every pixel is read."""
    from pipeline.modality import BLANK_REASON, BLANK_WHY, is_blank

    places = list(info.get("indices") or range(len(slices)))
    blank = [k for k, im in enumerate(slices) if is_blank(im)]
    if not blank:
        return slices, {**info, "blank": []}
    n, bad = len(slices), len(info.get("unreadable") or ())
    if len(blank) == n:
        if n == 1 and not bad:  # one image: as any blank file
            raise ImageError(f"{label}: {BLANK_REASON}")
        if bad:
            read = "the one slice" if n == 1 else f"the {n} slices"
            what = f"{read} that could be read {'is' if n == 1 else 'are'} blank"
        else:
            what = f"all {n} slices{' analysed' if int(info.get('frames') or n) > n else ''} "
            what += "are blank"
        raise ImageError(f"{label}: {what} {BLANK_WHY}")
    keep = [k for k in range(n) if k not in blank]
    own = {key: [v[k] for k in keep] for key, v in info.items()  # per slice: "slice_modality"
           if key.startswith("slice_") and isinstance(v, list) and len(v) == n}
    return [slices[k] for k in keep], {**info, **own, "slices": len(keep), "indices": [
        places[k] for k in keep], "blank": [places[k] + 1 for k in blank]}


def decode_image_info(data: bytes, name: str = "", max_pixels: int | None = None
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Like `decode_image`, also returning the source's `format`, `mode`, `width`, `height`,
    `frames` and `reduced_by` (Pillow formats)."""
    from pipeline import dicom
    label = _label(name)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise ImageError(f"{label}: expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError(f"{label}: empty file")
    with warnings.catch_warnings():
        # Pillow and pydicom warn about every odd EXIF block or VR; we report real failures.
        warnings.simplefilter("ignore")
        if _is_dicom(data, name):
            frames, info = dicom.decode_frames(data, label, max_pixels, first_only=True)
            return frames[0], info
        return _decode_pillow(data, label, max_pixels)


def decode_image(data: bytes, name: str = "", max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes into an H×W×3 uint8 RGB array, or raise ImageError.

    Grayscale is replicated to 3 channels, alpha composited on black, palettes expanded, 16-bit
    and float images scaled by their actual value range (hot pixels clipped), CMYK converted,
    EXIF orientation applied, the first frame of animations and multi-page TIFFs taken, DICOM
    rescaled and windowed.
    Refused: empty data, non-images, truncated files, images above `max_pixels` (default
    MAX_PIXELS; checked from the header before decoding) and images smaller than
    MIN_SIDE×MIN_SIDE. Images whose longer side exceeds MAX_DECODE_SIDE are shrunk while
    decoding (Pillow formats).
    """
    return decode_image_info(data, name, max_pixels)[0]


def _folder_reason(folder: Path) -> str:
    """Why `folder` is not read: FOLDER_MESSAGE when `stream.scan_inputs`' search (not hidden
    files) finds nothing in it, as when the CLI hands it on, else FOLDER_NOT_FILE."""
    from pipeline.stream import FOLDER_EXTS, file_ext, may_be_dicom_export  # it imports us

    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(not f.startswith(".") and (file_ext(f) in FOLDER_EXTS or may_be_dicom_export(
                Path(root, f))) for f in files):
            return FOLDER_NOT_FILE
    return FOLDER_MESSAGE


@contextlib.contextmanager
def open_regular(path: str | Path, label: str | None = None) -> Iterator[BinaryIO]:
    """The open file at `path` if it is a regular file of at most MAX_FILE_BYTES, else
    ImageError (message starts with `label`, default path); for readers that need only part
    of a file (a DICOM header).

    A FIFO named scan.png would block forever and /dev/zero never ends, so the file is opened
    non-blocking and checked with fstat on the open descriptor: it cannot be swapped for a pipe
    between the check and the read.
    """
    if not os.fspath(path):  # Path("") is ".", the working folder
        raise ImageError(f"{label}: no file name given" if label else "no file name given")
    path = Path(path)
    label = str(path) if label is None else label
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: {_folder_reason(path)}") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{label}: {_folder_reason(path)}")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{label}: not a regular file (a device, pipe or socket)")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError(f"{label}: file too large ({st.st_size / 1e6:.0f} MB; the limit is "
                             f"{MAX_FILE_BYTES / 1e6:.0f} MB)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            yield fh
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_file(path: str | Path, label: str | None = None) -> bytes:
    """The bytes of a regular file, or ImageError (message starts with `label`, default path).

    Only regular files are read (`open_regular`); files above MAX_FILE_BYTES are refused
    unread.
    """
    label = str(path) if label is None else label
    with open_regular(path, label) as fh:
        data = fh.read(MAX_FILE_BYTES + 1)  # a file growing while read stays capped
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: file too large (over {MAX_FILE_BYTES / 1e6:.0f} MB)")
    return data


def read_image(path: str | Path) -> np.ndarray:
    """One image file decoded (`decode_image`: a multi-frame file's first frame), or ImageError."""
    from pipeline import nifti  # it imports this module

    data, name = read_file(path), str(path)
    try:
        return decode_image(data, name)
    except ImageError:
        if name.lower().endswith(".zip") or nifti.is_nifti(data, name):  # a zip.jpg: no image
            raise ImageError(f"{name}: a series (a NIfTI volume or a zip of DICOM slices), not "
                             "one image: read its slices with pipeline.images.decode_slices("
                             "read_file(path), str(path))") from None
        raise

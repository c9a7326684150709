"""Multi-page TIFF stacks for `pipeline.images` (a stack exported from a viewer): every page a
slice, as a multi-frame DICOM's frames are (split from `pipeline.images`, which decodes a page as
it decodes a one-page file)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from pipeline.images import (
    MIN_SIDE,
    ImageError,
    _check_dims,
    _explain_pillow_error,
    _load_reduced,
    _to_rgb_array,
)


def tiff_pages(data: bytes | BinaryIO) -> int:
    """How many pages a TIFF holds, from its directories alone (no pixel is decoded); 1 for
    anything that is not a readable TIFF."""
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src, formats=("TIFF",)) as im:
            return int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # not a TIFF, or a damaged one: the one-image read reports it
        return 1


def decode_pages(data: bytes, label: str, max_pixels: int
                 ) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """The pages of a multi-page TIFF (at most MAX_SLICES, evenly spaced), each decoded as a
    one-page image is (size checks, shrinking, orientation, any mode to RGB); None for any other
    file. A page that cannot be decoded is left out, its number and reason in
    `info["unreadable"]` (`indices` keeps the pages returned): one damaged page cost the whole
    stack. ImageError, naming the page, when none can be decoded."""
    from pipeline.dicom import slice_indices

    total = tiff_pages(data)
    if total < 2:
        return None
    pages: list[np.ndarray] = []
    kept: list[int] = []
    unreadable: list[tuple[int, str]] = []
    first_error: ImageError | None = None
    im = Image.open(io.BytesIO(data), formats=("TIFF",))
    try:
        info: dict[str, Any] = {"format": "TIFF", "mode": im.mode, "width": im.size[0],
                                "height": im.size[1], "frames": total}
        for k in slice_indices(total):
            page_label = f"{label}: page {k + 1} of {total}"
            try:
                pages.append(_decode_page(im, k, page_label, max_pixels))
                kept.append(k)
            except ImageError as exc:
                first_error = first_error or exc
                unreadable.append((k + 1, str(exc).removeprefix(f"{page_label}: ")))
    finally:
        im.close()
    if not pages:
        raise first_error or ImageError(f"{label}: no page could be decoded")
    return pages, {**info, "slices": len(pages), "indices": kept, "unreadable": unreadable}


def _decode_page(im: Image.Image, k: int, page_label: str, max_pixels: int) -> np.ndarray:
    """Page k of an open multi-page TIFF as an RGB array, or ImageError naming the page."""
    try:
        im.seek(k)
        _check_dims(*im.size, page_label, max_pixels)
        page = _load_reduced(im.copy(), {"width": im.size[0]})
        oriented = ImageOps.exif_transpose(page)
        arr = _to_rgb_array(oriented if oriented is not None else page)
    except ImageError:
        raise
    except Exception as exc:
        raise _explain_pillow_error(exc, "TIFF", page_label) from None
    if arr.shape[0] < MIN_SIDE or arr.shape[1] < MIN_SIDE:
        raise ImageError(f"{page_label}: decoded to an unusable array of shape {arr.shape}")
    return arr

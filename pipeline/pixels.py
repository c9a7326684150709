"""Image arrays handed to the library (rather than read from a file) as the models' pixels:
`array_to_uint8` maps any number type to uint8 0-255 as a file of its kind is read, and
`zero_to_one` tells a prepared batch of 0-1 floats, which the models (raw 0-255 pixels) would
read as black. File decoding lives in `pipeline.images`."""

from __future__ import annotations

import numpy as np

from pipeline.images import ImageError, _scale_to_uint8

# What the library says of a prepared batch of 0-1 floats (the models take raw 0-255 pixels)
ZERO_TO_ONE = ("takes raw 0-255 pixels, got values within 0-1 (multiply by 255; "
               "Predictor.prepare and predict_images map 0-1 images)")
# A float array within this range is 0-1 pixels, resampling's overshoot included (a review: a
# 0-1 slice upsampled with cubic interpolation peaked at 1.009 and was read as black)
ZERO_TO_ONE_SLACK = (-0.05, 1.5)


def zero_to_one(arr: np.ndarray) -> bool:
    """Whether `arr` is floats within 0-1 with something lit: pixels on a 0-1 scale, which a
    model of raw 0-255 pixels reads as black (a slice prepared from 0-255 pixels is never that
    dark; an all-black batch is not flagged)."""
    return bool(np.issubdtype(arr.dtype, np.floating) and arr.size
                and 0 < float(np.nanmax(arr)) <= ZERO_TO_ONE_SLACK[1])


def array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """A numeric image array's pixels as uint8 0-255, for arrays handed to the library
    (`geometry.prepare_image`, `Predictor.predict_images`) rather than read from a file.

    uint8 stays as it is. Floats within about 0-1 (the convention of scikit-image and many
    notebooks; up to 1.5 and down to -0.05, as resampling leaves them) are clipped to 0-1 and
    multiplied by 255. Values already within 0-255 are rounded, as they are (a 16-bit file is
    stretched to its own range even then). Any other range (a 12-bit slice in uint16, CT in
    signed Hounsfield units, z-scores) is mapped from its own range as high-bit files are
    (`_scale_to_uint8`). Non-finite values become the darkest grey. Clipping to 0-255, as
    before 2026-12-07, made a 0-1 float slice black and a 12-bit one white (a review:
    MobileNetV2 said glioma 0.92 for a 16-bit file and no tumour 0.80 for the same pixels as
    an array). ImageError when no value is finite."""
    if arr.dtype == np.uint8:
        return arr
    floating = np.issubdtype(arr.dtype, np.floating)
    values = arr[np.isfinite(arr)] if floating else arr
    if values.size == 0:
        raise ImageError("the image array has no finite pixel value (all NaN or infinite)")
    lo, hi = float(values.min()), float(values.max())
    if floating and lo >= ZERO_TO_ONE_SLACK[0] and hi <= ZERO_TO_ONE_SLACK[1]:
        unit = np.clip(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
        return np.rint(unit * 255.0).astype(np.uint8)
    if lo >= (-0.5 if floating else 0) and hi <= (255.5 if floating else 255):
        full = np.nan_to_num(arr.astype(np.float64), nan=lo, posinf=lo, neginf=lo)
        return np.rint(np.clip(full, 0, 255)).astype(np.uint8)
    return _scale_to_uint8(arr)

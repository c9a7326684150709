"""Checks on what a `predict.Predictor` is handed: each image array, each model's manifest
entry and each loaded model, so a bad input fails in one line before it can mislabel anything."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import geometry, images, pixels
from pipeline.artifacts import ArtifactError, Run


def image_list(imgs: Any) -> list:
    """What `predict_images` is handed, as a list of images: a stacked (N, H, W, 3) batch
    split, one array or Pillow image a list of one. So is anything else that is no list (a
    file's name, None), for `checked_image` to refuse in one line: a Pillow image, a Path or
    None raised a bare TypeError ("'PngImageFile' object is not iterable"), a str was read as
    its letters."""
    if isinstance(imgs, np.ndarray):
        return list(imgs) if imgs.ndim == 4 else [imgs]
    if isinstance(imgs, (str, bytes)) or not isinstance(imgs, Iterable):
        return [imgs]
    return list(imgs)


def checked_image(img: Any, k: int) -> np.ndarray:
    """The `k`-th (from 0) image handed to `predict_images` as H×W×3 uint8, or ImageError."""
    label = f"image {k + 1}"
    try:
        rgb = geometry.as_rgb_uint8(img)
    except images.ImageError as exc:
        raise images.ImageError(f"{label}: {exc}") from None
    h, w = rgb.shape[:2]
    if h < images.MIN_SIDE or w < images.MIN_SIDE:
        raise images.ImageError(f"{label}: {w}×{h} image is too small (minimum "
                                f"{images.MIN_SIDE}×{images.MIN_SIDE})")
    return images.refuse_blank(rgb, label)


def check_info(run: Run, name: str, info: dict) -> None:
    """Refuse a manifest entry without a usable `image_size`."""
    size = info.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < images.MIN_SIDE:
        raise ArtifactError(f"damaged manifest of run {run.run_id}: {name} has no valid "
                            f"image_size (got {size!r})")


def check_model(run: Run, name: str, model, size: int) -> None:
    """Refuse a model that does not fit its manifest entry, before it can mislabel anything."""
    in_shape = tuple(model.inputs[0].shape)[1:]
    if len(in_shape) != 3 or in_shape[2] != 3 or any(
            s is not None and s != size for s in in_shape[:2]):
        raise ArtifactError(f"run {run.run_id}: {name} takes inputs of shape {in_shape} but its "
                            f"manifest says image_size {size}")
    n_out = model.outputs[0].shape[-1]
    if n_out != len(run.class_names):
        raise ArtifactError(f"run {run.run_id}: {name} predicts {n_out} classes but the manifest "
                            f"lists {len(run.class_names)} class_names ({run.class_names})")


def opened(run: Run | str | Path, models: Sequence[str] | str | None
           ) -> tuple[Run, Sequence[str] | None]:
    """`Predictor`'s arguments as it uses them: a run folder's path opened (`open_run`), one
    model's name as a list of one (a review's `models="custom_cnn"` read as 10 one-letter
    names and failed with "no model 'c'")."""
    if isinstance(run, (str, Path)):
        from pipeline.artifacts import open_run

        run = open_run(run)
    return run, [models] if isinstance(models, str) else models


def pixel_problem(x: np.ndarray, slack: float = 0.0) -> str | None:
    """What a batch of prepared images cannot be for models of raw 0-255 pixels, said after
    the model's name (`checked_batch`, the explainer's), or None. Refused: NaN and infinite
    values, 0-1 floats (a prepared slice that dark is black, so those are 0-1 pixels, which the
    models read as black), values more than `slack` outside 0-255 (a review: all-NaN, inf and
    300s got confident answers and heatmaps peaking at 1.0). A blank batch passes: deletion
    curves end on one, and `predict_images` refuses blank images before preparing them."""
    if x.dtype.kind not in "biuf" or not x.size:
        return None
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        return "takes finite pixel values, got NaN or infinite ones"
    if pixels.zero_to_one(x):
        return pixels.ZERO_TO_ONE
    lo, hi = x.min(), x.max()
    if lo < -slack or hi > 255 + slack:
        return f"takes raw 0-255 pixels, got values from {lo:g} to {hi:g}"
    return None


def checked_batch(model_name: str, x: Any, size: int) -> np.ndarray:
    """`x` as a batch of prepared images (N, size, size, 3) of raw 0-255 pixels, or ValueError
    (`pixel_problem`)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != (size, size, 3):
        raise ValueError(f"{model_name} expects a batch of shape (N, {size}, {size}, 3), "
                         f"got {tuple(x.shape)}")
    problem = pixel_problem(x)
    if problem:
        raise ValueError(f"{model_name} {problem}")
    return x


def one_image(probs: Any, n_classes: int) -> np.ndarray:
    """One image's probabilities (C,), from (C,) or (1, C); ValueError for anything else."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 2 and len(probs) == 1:
        probs = probs[0]
    if probs.shape != (n_classes,):
        raise ValueError(f"describe takes one image's {n_classes} probabilities, got shape "
                         f"{probs.shape}")
    return probs

"""Where a transfer model's pretrained weights come from: Keras cache, a file, or none.

Machines may reach only package registries, so nothing downloads unless asked for
(`--weights imagenet`); every failure says how to provide the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones import BACKBONES
from pipeline.names import display_name

log = logging.getLogger(__name__)


class WeightsError(ValueError):
    """Requested pretrained weights cannot be obtained."""


@dataclass(frozen=True)
class WeightsChoice:
    """What a transfer model starts from, as recorded in the manifest."""

    keras_arg: str | None  # value passed to keras.applications (None, "imagenet" or a path)
    label: str  # "imagenet", "none" or the file name
    sha256: str | None = None
    warning: str | None = None


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_weights(spec: str, model_name: str) -> WeightsChoice:
    """Turn `--weights auto|imagenet|none|PATH` into what the backbone constructor gets.

    `auto` never downloads: it uses the Keras cache or `$BRAIN_MRI_WEIGHTS`, else trains from
    scratch with a loud warning. An explicit `imagenet` tries one download (20 s timeout) unless
    `$BRAIN_MRI_OFFLINE` is set, then fails with a message saying how to provide the file.
    """
    if model_name not in BACKBONES:
        return WeightsChoice(None, "none")
    backbone = BACKBONES[model_name]
    spec = (spec or "auto").strip()
    if spec.lower() == "none":
        return WeightsChoice(None, "none")
    cached = keras_cache_dir() / backbone.cache_file if backbone.cache_file else None
    env_path = os.environ.get("BRAIN_MRI_WEIGHTS") if model_name == "mobilenetv2" else None
    how = (
        f"copy the ImageNet no-top weights to {cached} (for MobileNetV2: "
        "../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5), "
        "or pass --weights PATH, or --weights none to train from scratch"
    )
    if spec.lower() in ("auto", "imagenet"):
        if cached is not None and cached.is_file():
            # Pass the file itself: Keras would otherwise look for a size-specific file
            # (e.g. the 96 px one) and try to download it. Conv weights do not depend on size.
            return WeightsChoice(str(cached), "imagenet", sha256_file(cached))
        if env_path and Path(env_path).is_file():
            return _file_weights(Path(env_path), label_prefix="imagenet:")
        if spec.lower() == "auto":
            msg = (f"No ImageNet weights for {display_name(model_name)} found; training it FROM "
                   f"SCRATCH (expect much lower accuracy). To fix: {how}.")
            log.warning(msg)
            return WeightsChoice(None, "none", warning=msg)
        if not os.environ.get("BRAIN_MRI_OFFLINE"):
            try:
                _try_download(model_name)
                if cached is not None and cached.is_file():
                    return WeightsChoice(str(cached), "imagenet", sha256_file(cached))
            except Exception as exc:  # any network/IO failure means "not obtainable"
                log.info("ImageNet weight download failed: %s", exc)
        raise WeightsError(f"ImageNet weights for {display_name(model_name)} are not available "
                           f"offline and could not be downloaded: {how}.")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; use auto, imagenet, none or a "
                           "path to a .h5 / .weights.h5 file")
    if not (path.name.endswith(".h5")):
        raise WeightsError(f"weights file {path} must be a .h5 or .weights.h5 file")
    return _file_weights(path)


def _file_weights(path: Path, label_prefix: str = "") -> WeightsChoice:
    return WeightsChoice(str(path.resolve()), f"{label_prefix}{path.name}", sha256_file(path))


def _try_download(model_name: str) -> None:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        BACKBONES[model_name].constructor(include_top=False, weights="imagenet",
                                          input_shape=(224, 224, 3))
    finally:
        socket.setdefaulttimeout(old)

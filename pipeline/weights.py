"""Where a transfer model's pretrained weights come from: Keras cache, a file, or none.

Machines may reach only package registries, so nothing downloads unless asked for
(`--weights imagenet`); every failure says how to provide the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.backbones import BACKBONES
from pipeline.names import display_name

log = logging.getLogger(__name__)


# a MobileNetV2 weights file to use when the Keras cache has none (`make weights` fills the cache)
WEIGHTS_ENV = "BRAIN_MRI_WEIGHTS"
# SHA-256 of MobileNetV2's ImageNet no-top weights as Keras caches them (.h5) and as Keras 3
# saves them (.weights.h5): the same weights (`tests/test_sequence.py`). What is fitted on their
# features (`pipeline.sequence`) holds only for these files, not for any .h5 a path names.
IMAGENET_SHA256 = frozenset({
    "71e4c4ec4aa24c9c951b9265d6de42e1336dcf614c2214fa6a989208615e232c",
    "6714965a05ee6d8568343664bb9cda7456c6eb1fa190a6f5eb39bf087068b100",
})


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


def resolve_weights(spec: str, model_name: str, *, warn: bool = True) -> WeightsChoice:
    """Turn `--weights auto|imagenet|none|PATH` into what the backbone constructor gets.

    `auto` never downloads: it uses the Keras cache or `$BRAIN_MRI_WEIGHTS`, else trains from
    scratch with a loud warning. An explicit `imagenet` tries one download (20 s timeout) unless
    `$BRAIN_MRI_OFFLINE` is set, then fails with a message saying how to provide the file.
    `warn=False` leaves the from-scratch warning to the returned choice (not logged).
    """
    if model_name not in BACKBONES:
        return WeightsChoice(None, "none")
    backbone = BACKBONES[model_name]
    spec = (spec or "auto").strip()
    if spec.lower() == "none":
        return WeightsChoice(None, "none")
    cached = keras_cache_dir() / backbone.cache_file if backbone.cache_file else None
    env_path = os.environ.get(WEIGHTS_ENV) if model_name == "mobilenetv2" else None
    how = _how_to_provide(model_name, cached)
    if spec.lower() in ("auto", "imagenet"):
        if cached is not None and cached.is_file():
            # Pass the file itself: Keras would otherwise look for a size-specific file
            # (e.g. the 96 px one) and try to download it. Conv weights do not depend on size.
            return WeightsChoice(str(cached), "imagenet", sha256_file(cached))
        if env_path and Path(env_path).expanduser().is_file():
            return _file_weights(Path(env_path).expanduser(), label_prefix="imagenet:")
        if env_path:  # named, but not there: `auto` trained from scratch without a word of it
            raise WeightsError(f"${WEIGHTS_ENV} names {env_path}, which is not a file: {how}")
        if spec.lower() == "auto":
            msg = (f"No ImageNet weights for {display_name(model_name)} found; training it FROM "
                   f"SCRATCH (expect much lower accuracy). To fix: {how}.")
            if warn:  # check_weights resolves quietly: the build says it, as the model starts
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
        raise WeightsError(f"weights file {path} does not exist: {how}")
    if not (path.name.endswith(".h5")):
        raise WeightsError(f"weights file {path} must be a .h5 or .weights.h5 file")
    return _file_weights(path)


def check_weights(spec: str, models: Sequence[str]) -> None:
    """Resolve `spec` for every transfer model of `models` now, before any data is read: a
    weights file that is missing (a path, `$BRAIN_MRI_WEIGHTS`, ImageNet weights asked for by
    `imagenet`) raised its WeightsError only when the model was built, after the data pass.
    `auto` without weights stays a warning, said when the model is built."""
    for name in models:
        if name in BACKBONES:
            resolve_weights(spec, name, warn=False)


def _how_to_provide(model_name: str, cached: Path | None) -> str:
    """Where to put the ImageNet weights file, said by every WeightsError."""
    home = str(Path.home())
    where = str(cached) if cached is not None else "the Keras cache"
    if where.startswith(home + os.sep):  # ~/.keras/models, not this machine's user folder
        where = "~" + where[len(home):]
    name = cached.name if cached is not None else "the no-top weights file"
    shared = (f"run `make weights` (it copies the shared copy ../shared/weights/{name} there) "
              "or copy " if model_name == "mobilenetv2" else "copy ")
    return (f"{shared}the ImageNet no-top weights {name} to {where}, or give the file's path "
            f"(--weights PATH, or ${WEIGHTS_ENV} for MobileNetV2), or train from scratch with "
            '--weights none (in a --config file: "weights": "none")')


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

"""Does a slice look like T2 or FLAIR rather than T1? A learnt hint for a warning (~10 ms).

Why: on the Sartaj data the tumour classes were learnt from T1 slices. By our eye (`labels.csv`,
not a radiologist's reading) 18 of Training/'s 2475 tumour slices are T2 or FLAIR, none of them
a glioma, against 161 of its 395 no-tumour slices: for the models a bright-fluid or
FLAIR look means "no tumour" or "meningioma". On the official Testing/ folder the shipped
models recognised few of the tumours on such slices (README, "T2 and FLAIR slices").

How: ImageNet MobileNetV2 (its frozen weights, not a run's model: the hint is the same for every
run) on the head-cropped slice at `SIDE` px, three of its stages (`LAYERS`) global-average-pooled
to 2048 numbers, and a logistic regression on them (`probe.json`, fitted by
`pipeline.sequence.fit` on our labels of Training/ images only; its threshold gives 2 % false
alarms on Training/'s other-source T1 slices, out of fold). A hint ("may be T2 or FLAIR"), never
a verdict, never a reason to change an answer.
It needs the ImageNet weights MobileNetV2 trains from (`weights.resolve_weights`); without them
`unavailable()` says why and the hint is not given.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.names import Progress, no_progress

PROBE_FILE = Path(__file__).with_name("probe.json")
LABELS_FILE = Path(__file__).with_name("labels.csv")
SIDE = 128  # the slice's side for the features: 8 ms an image here, as good as 224 px was
# MobileNetV2's stages pooled for the features (192 + 576 + 1280 numbers): with the earlier two,
# cross-validated AUC on Training/'s labelled slices 0.982 against 0.978 for `out_relu` alone
# (2026-12-07, fitted beside 500 of the figshare slices; 224 px: 0.978)
LAYERS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")
BATCH = 32
_LOCK = threading.Lock()  # one predict at a time (the dashboard serves from several threads)
_BUILD_LOCK = threading.Lock()  # one build: the dashboard's warm-up thread and a page's
# `unavailable()` ask at once, and lru_cache alone lets both build (0.8 s each)


@dataclass(frozen=True)
class Probe:
    """The fitted linear rule: score = sigmoid(features @ coef + intercept) >= threshold."""

    coef: np.ndarray  # (2048,), on the raw pooled features (the scaler folded in)
    intercept: float
    threshold: float
    side: int

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The probability of "T2 or FLAIR" for each row of `features` (n, 2048)."""
        z = np.asarray(features, np.float64) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))



def hint_said(t2: bool | None, *, ct: bool = False, colour: bool = False,
              photo: bool = False, far: bool = False) -> bool | None:
    """The hint as every output gives it (predict, explain, captions, the dashboard's card):
    never on a slice that may be CT, on a colour image or a photo, or on an image a model finds
    far unlike its training data (`ood.FAR`), which are no MRI for it to be a sequence of
    (beside "may be CT" it contradicted it: a clinician's review, 2026-12-07; beside "may not
    be a brain MRI slice at all", grey noise's: a review of the far level); None where it
    cannot run."""
    return None if t2 is None else bool(t2) and not (ct or colour or photo or far)

def read_probe(path: str | Path = PROBE_FILE) -> Probe:
    """The probe stored in `path` (`python -m pipeline.sequence.fit` writes it); ValueError for
    one fitted on features of another size than `features` makes."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    probe = Probe(np.asarray(obj["coef"], np.float64), float(obj["intercept"]),
                  float(obj["threshold"]), int(obj["side"]))
    if probe.side != SIDE:
        raise ValueError(f"{path}: fitted at {probe.side} px, the features are taken at {SIDE}")
    return probe


@functools.lru_cache(maxsize=1)
def _probe() -> Probe:
    return read_probe()


def _extractor() -> tuple[object | None, str | None]:
    """(MobileNetV2's ImageNet features at `SIDE` px, pooled; None) or (None, why not), built
    once per process, whichever threads ask."""
    with _BUILD_LOCK:
        return _build()


@functools.lru_cache(maxsize=1)
def _build() -> tuple[object | None, str | None]:
    from pipeline.backbones import BACKBONES
    from pipeline.weights import (
        IMAGENET_SHA256,
        WEIGHTS_ENV,
        WeightsError,
        keras_cache_dir,
        resolve_weights,
    )

    try:
        choice = resolve_weights("auto", "mobilenetv2", warn=False)
    except WeightsError as exc:  # $BRAIN_MRI_WEIGHTS names a file that is not there
        return None, str(exc)
    if choice.keras_arg is None:
        name = BACKBONES["mobilenetv2"].cache_file
        folder = str(keras_cache_dir()).replace(str(Path.home()), "~", 1)
        return None, (f"it needs MobileNetV2's ImageNet weights, not found on this machine: run "
                      f"`make weights`, copy {name} into {folder}, or set ${WEIGHTS_ENV} to "
                      "the weights file")
    if choice.sha256 not in IMAGENET_SHA256:  # another file: the fitted rule means nothing on it
        return None, (f"the MobileNetV2 weights found ({choice.label}) are not the ImageNet file "
                      "it was fitted with")
    import keras

    base = keras.applications.MobileNetV2(include_top=False, weights=choice.keras_arg,
                                          input_shape=(SIDE, SIDE, 3))
    pooled = [keras.layers.GlobalAveragePooling2D()(base.get_layer(n).output) for n in LAYERS]
    return keras.Model(base.input, keras.layers.Concatenate()(pooled)), None


def unavailable() -> str | None:
    """Why the hint cannot be given on this machine (no ImageNet weights), or None."""
    return _extractor()[1]


def prepare(image: np.ndarray) -> np.ndarray:
    """A decoded slice as the probe sees it: head-cropped, square, `SIDE` px, uint8 RGB."""
    from pipeline.geometry import prepare_image

    return prepare_image(image, SIDE, crop=True)


def features(prepared: np.ndarray) -> np.ndarray | None:
    """Pooled ImageNet features (n, 2048) of `prepare`d slices (n, SIDE, SIDE, 3); None when the
    weights are missing (`unavailable`)."""
    model = _extractor()[0]
    if model is None:
        return None
    x = np.asarray(prepared, np.float32) / 127.5 - 1.0  # MobileNetV2's own input scaling
    # Keras' compiled predict step: a plain call took 100 ms for one slice, this 12 ms. One
    # caller at a time: the dashboard serves sessions from several threads.
    with _LOCK:
        out = [np.asarray(model.predict_on_batch(x[i:i + BATCH]))
               for i in range(0, len(x), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, 2048), np.float32)


def scores_prepared(prepared: np.ndarray) -> np.ndarray | None:
    """The probe's probability of "T2 or FLAIR" per `prepare`d slice; None when unavailable."""
    f = features(prepared)
    return None if f is None else _probe().scores(f)


def looks_like_t2(images: Sequence[np.ndarray]) -> list[bool] | None:
    """Per decoded slice, whether it looks like T2 or FLAIR (the probe's score at or over its
    threshold); None when the hint is unavailable (`unavailable` says why)."""
    if not len(images):
        return [] if unavailable() is None else None
    return flags_prepared(np.stack([prepare(im) for im in images]))


def may_be_t2(image: np.ndarray) -> bool | None:
    """`looks_like_t2` of one decoded slice; None when the hint cannot run here."""
    found = looks_like_t2([image])
    return found[0] if found else None


def flags_prepared(prepared: np.ndarray) -> list[bool] | None:
    """`looks_like_t2` for slices already `prepare`d (a predict batch prepares them with the
    models' inputs)."""
    s = scores_prepared(prepared)
    return None if s is None else [bool(v >= _probe().threshold) for v in s]


def files_flags(root: Path, rels: Sequence[str], progress: Progress = no_progress
                ) -> dict[str, bool] | None:
    """{rel: may be T2 or FLAIR} for the image files `root` / rel, decoded a chunk at a time
    (a run's test split: flags.json's `t2` row); None when the hint cannot run here."""
    from pipeline.images import read_image

    if unavailable():
        return None
    out: dict[str, bool] = {}
    for start in range(0, len(rels), 64):
        part = list(rels[start:start + 64])
        found = looks_like_t2([read_image(Path(root) / r) for r in part]) or []
        out.update(zip(part, found, strict=True))
        progress("T2/FLAIR hint", len(out), len(rels))
    return out

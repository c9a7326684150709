"""Inference for the Predict and Error-analysis pages: probabilities and heatmaps per image.

Nothing here draws. Results are kept per image in `dashboard.loader`'s shared result store, so
changing only the opacity or the outline re-renders overlays from cached heatmaps instead of
recomputing them. `warm_up` runs the same computation once on a synthetic image when a run's
models are loaded.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dashboard import core, layer_names, loader, records
from pipeline import sequence
from pipeline.artifacts import Run, crop_head
from pipeline.known_data import trained_on_sartaj
from pipeline.modality import DICOM_CT, not_mri_words
from pipeline.names import HEATMAP_ALPHA, class_index, size_label

TRUE_CLASS = "true class"  # Settings.target: each test image's own class (Error analysis)


@dataclass
class Settings:
    method: str | None = None  # None = each model's own default (Explainer.method)
    target: str | None = None  # None = each image's predicted class; TRUE_CLASS: its true class
    alpha: float = HEATMAP_ALPHA  # `explain --alpha`'s default too
    outline: bool = False
    layers: dict[str, str | None] = field(default_factory=dict)


@dataclass
class ImageResult:
    """One model's result for one image, as kept in the shared result store."""

    prepared: np.ndarray  # (S, S, 3) uint8: what the model saw
    heatmap: np.ndarray  # (S, S) float32 in [0, 1]
    probs: np.ndarray  # (C,) class probabilities (calibrated in `Results`, raw in the store)
    target: int  # class the heatmap explains
    method: str
    layer: str | None
    crop: bool = True  # whether the model's frame is head-cropped (for boxes drawn on it)
    # shortcut alarm, computed once per result: share of the heat in the heatmap's hottest 10 %
    # outside the head
    # (head region found on the full image, brought into the model's frame)
    outside_head: float | None = None
    # how unlike the training data the model's features are (`ood.OodModel.levels`: 0 / False,
    # 1 / True unlike, `ood.FAR` far unlike; None: the run has no OOD score)
    unlike_training: int | None = None
    layer_words: str | None = None  # the layer in plain words ("last conv block, 7×7")
    fused: int = 0  # how many layers a fusion method fused (`layer_words` says so), else 0
    default: bool = False  # the method is the model's own default (no method was picked)
    seconds: float = 0.0  # this image's share of the batch's time when it was computed

    @property
    def empty(self) -> bool:
        """True when the heatmap shows no positive evidence anywhere."""
        from pipeline.explain import is_empty

        return is_empty(self.heatmap)

    @property
    def outside_head_flag(self) -> bool:
        """True when the heatmap's evidence is mostly outside the head (shortcut alarm)."""
        from pipeline.explain import outside_head_flag

        return outside_head_flag(self.outside_head)


@dataclass
class Results:
    """Per model, one ImageResult per good image (in order); errors for models that failed."""

    per_model: dict[str, list[ImageResult]]
    errors: dict[str, str]
    seconds: float
    low_below: dict[str, float | None] = field(default_factory=dict)  # weak-answer thresholds
    # robustness.json's, per model (`flags.ShiftedAccuracy`)
    shifted_accuracy: dict[str, Any] = field(default_factory=dict)
    image_sizes: list[str] = field(default_factory=list)  # "WxH" of each good image, decoded
    by_size: dict[str, dict | None] = field(default_factory=dict)  # metrics.json's, per model
    class_names: list[str] = field(default_factory=list)  # the run's, in probability order
    flag_accuracy: dict[str, dict] = field(default_factory=dict)  # flags.json's, per model
    # per good image: None when (part of) it was computed by this call, else the seconds every
    # model took for it when it was computed before (all its results came from the store)
    earlier: list[float | None] = field(default_factory=list)
    colour: list[bool] = field(default_factory=list)  # per good image: `core.Upload.colour`
    # per good image: `core.Upload.ct`, "header" where its DICOM header said CT, or the code of
    # another kind of imaging its header names (`ct_said`)
    ct: list[bool | str] = field(default_factory=list)
    photo: list[bool] = field(default_factory=list)  # per good image: `core.Upload.photo`
    t2: list[bool | None] = field(default_factory=list)  # per good image: `core.Upload.t2`
    # per good image: the split holding it pixel for pixel (`Upload.seen_split` when
    # `Upload.seen_exact`), whose "unlike the training data" warning is not shown
    # (`membership.hides_unlike`); "" for anything else, a changed copy included
    seen_split: list[str] = field(default_factory=list)
    # per model, metrics.json's `tumor_vs_no_tumor` (None where not measured): how often its
    # test answers "no tumour" were right, said beside each "no tumour" answer
    tumour_records: dict[str, dict | None] = field(default_factory=dict)
    # what the percentages are (temperature-scaled) and how far off they ran on the run's test
    # images: `calibration_line.calibration_note`, under every probability table and in the reports
    calibration_note: str = ""
    # the run was trained on the Sartaj data (`known_data.trained_on_sartaj`): the CT and "no
    # tumour" warnings may say what its no-tumour folder holds
    sartaj: bool = False
    # the run's record for the two-heatmap rule (`agreement.apart_record`): how often peaks far
    # apart meant a miss on its boxed test images; None when not measured
    apart_record: dict[str, int] | None = None
    # per model, its default heatmaps' pointing game per true class on the run's test images
    # (`flags.PointingRecord`), said under each default heatmap of a class it has
    pointing_records: dict[str, Any] = field(default_factory=dict)
    # (N, C): every model's probabilities pooled into one answer (`Predictor.together`,
    # `evaluate.together`); None for one model, or when only one model answered
    together: np.ndarray | None = None
    together_note: str = ""  # how often the pooled answer was right on the run's test images
    # confidence below which the pooled answer is weak (`Predictor.pool_weak_below`); None when
    # the run's calibration.json has none
    together_weak_below: float | None = None

    def unlike(self, j: int) -> dict[str, int | None]:
        """Per model, how unlike its training data good image j is (`ImageResult`'s
        `unlike_training`: truthy is unlike, `ood.FAR` far unlike; None: not measured)."""
        return {m: rs[j].unlike_training for m, rs in self.per_model.items() if rs}

    def far(self, j: int) -> dict[str, bool | None]:
        """Per model, whether good image j is far unlike its training data (`ood.FAR`)."""
        from pipeline.ood import FAR

        return {m: None if u is None else u >= FAR for m, u in self.unlike(j).items()}

    @property
    def probs(self) -> dict[str, np.ndarray]:
        """(N, C) probabilities per model that produced results."""
        return {m: np.stack([r.probs for r in rs]) for m, rs in self.per_model.items() if rs}


def explain(run: Run, predictor: Any, explainers: dict[str, Any], uploads: Sequence[core.Upload],
            settings: Settings) -> Results:
    """Probabilities and heatmaps of every model for the good uploads.

    Each model uses `settings.method`, or its own default (`Explainer.method`: the run's
    recorded choice for that model) when None. Results are kept per image in the shared store
    (key: run, model, image hash, method, class, layer), so only images not seen before with
    these settings are computed, in one batch call per model; the explanation pass also yields
    the class probabilities, so no separate prediction pass is needed. The store keeps the
    explainer's raw probabilities; the results carry them calibrated by the run's temperature
    (`predictor.apply_calibration`, the same as every other consumer of the run).
    """
    good = [u for u in uploads if u.ok]
    store = loader.result_store()
    run_key = loader.run_key(run)
    # per image: the class asked for, each image's true class (where it is known; else its
    # predicted class), or None for each image's predicted class
    targets = ([class_index(u.true_label, run.class_names) if u.true_label else None
                for u in good] if settings.target == TRUE_CLASS
               else [class_index(settings.target, run.class_names)] * len(good))
    start = time.perf_counter()
    per_model: dict[str, list[ImageResult]] = {}
    errors: dict[str, str] = {}
    fresh = [False] * len(good)  # computed (for some model) by this call
    for m, ex in explainers.items():
        method = settings.method or ex.method
        layer = settings.layers.get(m)
        keys = [(run_key, m, u.digest, method, t, layer) for u, t in zip(good, targets,
                                                                          strict=True)]
        found = {k: store.get(k) for k in keys}
        missing = [i for i, k in enumerate(keys) if found[k] is None]
        try:
            for target in dict.fromkeys(targets[i] for i in missing):  # a batch per class
                part = [i for i in missing if targets[i] == target]
                computed = _compute(run, predictor, m, ex, [good[i].image for i in part],
                                    method, target, layer)
                for i, result in zip(part, computed, strict=True):
                    found[keys[i]] = result
                    store.put(keys[i], result)
                    fresh[i] = True
        except Exception as exc:  # one model failing to explain must not hide the other
            errors[m] = f"{type(exc).__name__}: {exc}"
            continue
        words: dict[tuple[str | None, str], tuple[str, int]] = {}  # once per layer, method
        for k in keys:
            r = found[k]
            if (r.layer, r.method) not in words:
                n = fused_stages(ex, r.layer, r.method)
                words[r.layer, r.method] = (layer_text(ex, r.layer, n), n)
        per_model[m] = [replace(found[k], probs=predictor.apply_calibration(m, found[k].probs),
                                layer_words=words[found[k].layer, found[k].method][0],
                                fused=words[found[k].layer, found[k].method][1],
                                # the default is its method at its layer: another layer
                                # picked in "Layers (advanced)" is no longer the default
                                default=settings.method is None and layer in (None, ex.layer))
                    for k in keys]
    earlier = [None if fresh[i] or not per_model else sum(rs[i].seconds
                                                           for rs in per_model.values())
               for i in range(len(good))]
    return Results(per_model, errors, time.perf_counter() - start,
                   {m: predictor.low_confidence_below(m) for m in per_model},
                   records.shifted_accuracy(run),
                   [size_label(u.image.shape[1], u.image.shape[0]) for u in good],
                   records.size_groups(run), list(run.class_names), records.flag_accuracy(run),
                   earlier, colour=[u.colour for u in good], ct=[ct_said(u) for u in good],
                   photo=[u.photo for u in good], t2=[u.t2 for u in good],
                   seen_split=[u.seen_split if u.seen_exact else "" for u in good],
                   tumour_records=records.tumour_records(run),
                   calibration_note=records.calibration_note(run, predictor),
                   sartaj=trained_on_sartaj(run.manifest),
                   apart_record=records.apart_record(run),
                   pointing_records=records.pointing_records(run),
                   together=_together(predictor, per_model),
                   together_note=records.together_note(run),
                   together_weak_below=_pool_weak_below(predictor))


def ct_said(upload: core.Upload) -> bool | str:
    """Whether `upload` may be CT: "header" where its DICOM header says so (the card then says
    it as a fact, not a look), else `Upload.ct`; or, where its header names another kind of
    imaging than MRI (`modality.not_mri_words`), that code ("US"): the card says so first."""
    if not_mri_words(upload.modality):
        return upload.modality
    return "header" if upload.ct and upload.modality == DICOM_CT else upload.ct


def _together(predictor: Any, per_model: dict[str, list[ImageResult]]) -> np.ndarray | None:
    """The models' calibrated probabilities pooled (`Predictor.together`), when at least two
    answered for every image; None otherwise (a stand-in predictor without the pool too)."""
    probs = {m: np.stack([r.probs for r in rs]) for m, rs in per_model.items() if rs}
    pool = getattr(predictor, "together", None)
    return pool(probs) if pool is not None and len(probs) > 1 else None


def _pool_weak_below(predictor: Any) -> float | None:
    """`Predictor.pool_weak_below`; None for a stand-in predictor without it."""
    below = getattr(predictor, "pool_weak_below", None)
    return below() if below is not None else None


def _compute(run: Run, predictor: Any, m: str, ex: Any, images: Sequence[np.ndarray],
             method: str, target: int | None, layer: str | None) -> list[ImageResult]:
    """Model `m`'s results for decoded images, in one batch (raw probabilities); each carries
    its share of the batch's time."""
    start = time.perf_counter()
    # (N, S, S, 3) uint8: each image cropped and resized exactly as that model was trained
    batch = np.stack([predictor.prepare(m, im) for im in images])
    e = ex(batch, method=method, target=target, layer=layer)
    crop = crop_head(run.model_info(m))
    unlike = predictor.unlike_training(m, batch)
    results = [ImageResult(batch[j], e.heatmaps[j], e.probs[j], int(e.targets[j]), e.method,
                           e.layer, crop, _outside_head(image, e.heatmaps[j], crop),
                           None if unlike is None else int(unlike[j]))
               for j, image in enumerate(images)]
    share = (time.perf_counter() - start) / max(len(results), 1)
    return [replace(r, seconds=share) for r in results]


def warm_image(side: int = 256) -> np.ndarray:
    """A synthetic slice (a bright ellipse, a head, on black), to warm the models up with."""
    yy, xx = np.mgrid[:side, :side]
    head = ((yy - side / 2) / (0.4 * side)) ** 2 + ((xx - side / 2) / (0.33 * side)) ** 2 <= 1
    return np.repeat((head * 120).astype(np.uint8)[..., None], 3, axis=2)


def warm_up(run: Run, predictor: Any, explainers: dict[str, Any]) -> None:
    """Every model explains one synthetic image with its own default method and layer, exactly
    as `explain` does for an upload (nothing is stored): the first call of a compiled graph
    traces and optimises it (about a second for MobileNetV2's LayerCAM), which an upload
    would otherwise wait for. Also reads the thresholds every upload reads, and builds the
    T2/FLAIR hint's network (`sequence.may_be_t2`: 1.5 s on the first upload otherwise)."""
    image = warm_image()
    sequence.may_be_t2(image)
    for m, ex in explainers.items():
        results = _compute(run, predictor, m, ex, [image], ex.method, None, None)
        predictor.apply_calibration(m, results[0].probs)
        predictor.low_confidence_below(m)
        layer_text(ex, results[0].layer)


# Per explainer, what `layer_text` and `fused_stages` said, keyed by their other arguments: a
# model's layers never change, and every rerun asked again (the layer menu's ~190 options
# through Keras' `get_layer`, the fusion's stages through a walk of the model: 0.08 s a rerun
# of the Predict page, measured with yappi on 2026-12-07). Weak keys: a dropped run's explainer
# takes its words with it.
_SAID: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def _said(ex: Any, key: tuple, compute: Callable[[], Any]) -> Any:
    try:
        memo = _SAID.setdefault(ex, {})
    except TypeError:  # a stand-in explainer that cannot be weakly referenced
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def layer_text(ex: Any, name: str | None, fused: int = 0) -> str:
    """Plain words for a layer of explainer `ex`'s model ("last conv block, 7×7"); for a
    fusion method's `fused` layers, "3 stages fused; deepest: last conv block, 7×7" (the
    caption named the deepest layer alone, as if the map were that layer's: h64's review)."""
    if name is None:
        return "input pixels"
    return _said(ex, ("text", name, fused), lambda: _layer_text(ex, name, fused))


def _layer_text(ex: Any, name: str, fused: int) -> str:
    shape = ex.model.get_layer(name).output.shape
    words = layer_names.layer_label(name, (shape[1], shape[2]), last=name == ex.valid_layers[0])
    return f"{fused} stages fused; deepest: {words}" if fused > 1 else words


def fused_stages(ex: Any, name: str | None, method: str) -> int:
    """How many layers `method` fuses from layer `name` of `ex`'s model (the registry's fusion
    methods, `cams.GradCamFusion`: up to `FUSION_STAGES` resolution stages,
    `layers.stage_layers`); 0 for any other method."""
    from pipeline.explain.cams import FUSION_STAGES
    from pipeline.explain.layers import stage_layers
    from pipeline.explain.methods import fuses_layers

    if name is None or not fuses_layers(method):
        return 0
    return _said(ex, ("stages", name), lambda: len(stage_layers(ex.model, name, FUSION_STAGES)))


def _outside_head(image: np.ndarray, heatmap: np.ndarray, crop: bool) -> float | None:
    """The shortcut alarm's measure (`explain.top_outside_head`: share of the heatmap's hottest
    10 % outside the head of `image`), in the model's frame; None for an all-zero map."""
    from pipeline.explain import head_mask_in_frame, top_outside_head

    head = head_mask_in_frame(image, heatmap.shape[0], crop)
    share = top_outside_head(heatmap, head)
    return float(share) if np.isfinite(share) else None


# ------------------------------------------------------------------- tumour boxes (optional)


def boxes_folder(data_dir: str | Path | None) -> Path | None:
    """The tumour-box masks of the run's dataset: `$BRAIN_MRI_BOXES`, else `<dataset>-boxes/masks`
    next to the dataset; None when absent (boxes are optional)."""
    from pipeline.explain import boxes_dir

    return boxes_dir(data_dir)


def load_box(boxes: Path | None, rel: str) -> np.ndarray | None:
    """The box mask of dataset image `rel` ((H, W) uint8, non-zero inside), or None when there is
    none, it is empty or it cannot be read."""
    from pipeline import images
    from pipeline.explain import find_mask, read_mask

    if boxes is None:
        return None
    path = find_mask(boxes, rel)
    if path is None:
        return None
    try:
        box = read_mask(path)
    except (images.ImageError, OSError):
        return None
    return box if box.any() else None


def box_in_frame(box: np.ndarray, image: np.ndarray, result: ImageResult) -> np.ndarray:
    """`box` (drawn on the original image, any size) in the model's frame of `result`."""
    from pipeline.explain import prepare_mask
    from pipeline.explain.masks import mask_like

    m = mask_like(box, image.shape[:2]).astype(np.uint8)
    return prepare_mask(m, image, result.prepared.shape[0], result.crop)


def peak_in_box(result: ImageResult, box_frame: np.ndarray) -> bool:
    """Whether the heatmap's hottest pixel lies inside the box (the pointing game)."""
    from pipeline.explain import pointing_game

    return pointing_game(result.heatmap, box_frame)

"""Inference for the Predict and Error-analysis pages: probabilities and heatmaps per image.

Nothing here draws. Results are kept per image in `dashboard.state`'s shared result store (all
caching lives in `dashboard.state`), so changing only the opacity or the outline re-renders
overlays from cached heatmaps instead of recomputing them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dashboard import core, state
from pipeline.artifacts import Run
from pipeline.names import class_index


@dataclass
class Settings:
    method: str = "gradcam"
    target: str | None = None  # None = each image's predicted class
    alpha: float = 0.45
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


@dataclass
class Results:
    """Per model, one ImageResult per good image (in order); errors for models that failed."""

    per_model: dict[str, list[ImageResult]]
    errors: dict[str, str]
    seconds: float

    @property
    def probs(self) -> dict[str, np.ndarray]:
        """(N, C) probabilities per model that produced results."""
        return {m: np.stack([r.probs for r in rs]) for m, rs in self.per_model.items() if rs}


def explain(run: Run, predictor: Any, explainers: dict[str, Any], uploads: Sequence[core.Upload],
            settings: Settings) -> Results:
    """Probabilities and heatmaps of every model for the good uploads.

    Results are kept per image in the shared store, so only images not seen before with these
    settings are computed, in one batch call per model; the Grad-CAM pass also yields the class
    probabilities, so no separate prediction pass is needed. The store keeps the explainer's raw
    probabilities; the results carry them calibrated by the run's temperature
    (`predictor.apply_calibration`, the same as every other consumer of the run).
    """
    good = [u for u in uploads if u.ok]
    store = state.result_store()
    run_key = state.run_key(run)
    target = class_index(settings.target, run.class_names)
    start = time.perf_counter()
    per_model: dict[str, list[ImageResult]] = {}
    errors: dict[str, str] = {}
    for m, ex in explainers.items():
        layer = settings.layers.get(m)
        keys = [(run_key, m, u.digest, settings.method, target, layer) for u in good]
        found = {k: store.get(k) for k in keys}
        missing = [i for i, k in enumerate(keys) if found[k] is None]
        try:
            if missing:
                batch = core.prepare_batch(predictor, m, [good[i].image for i in missing])
                e = ex(batch, method=settings.method, target=target, layer=layer)
                for j, i in enumerate(missing):
                    found[keys[i]] = ImageResult(batch[j], e.heatmaps[j], e.probs[j],
                                                 int(e.targets[j]), e.method, e.layer)
                    store.put(keys[i], found[keys[i]])
        except Exception as exc:  # one model failing to explain must not hide the other
            errors[m] = f"{type(exc).__name__}: {exc}"
            continue
        per_model[m] = [replace(found[k], probs=predictor.apply_calibration(m, found[k].probs))
                        for k in keys]
    return Results(per_model, errors, time.perf_counter() - start)

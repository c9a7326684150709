"""Inference with a run's models: prepare images exactly as training did, then predict."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import geometry, images
from pipeline.artifacts import ArtifactError, Run
from pipeline.calibration import FILE as CALIBRATION_FILE
from pipeline.calibration import apply_temperature, read_low_confidence, read_temperatures


@dataclass
class Prediction:
    """One image's result for one model."""

    model: str
    label: str
    probs: dict[str, float]


# Files decoded and predicted at a time by `predict_files`: memory stays bounded on any folder.
FILE_CHUNK = 64


class Predictor:
    """Loads a run's models once and predicts from any thread.

    Each model runs through one traced graph (`models.compiled`, any batch size): one MobileNetV2
    image took 196 ms through eager Keras calls. Running a traced function is thread-safe; a
    per-model lock guards only building it, on first use.

    Probabilities are calibrated: when the run has a `calibration.json` (`pipeline.calibration`),
    each model's temperature is applied to everything `predict_arrays` and `predict_images`
    return, and `apply_calibration` applies it to probabilities computed elsewhere (the
    dashboard's explanations). The file is re-read when it changes, so a long-lived Predictor
    (the dashboard's) follows a run calibrated after it was loaded. `calibrated=False` gives the
    models' raw softmax outputs (evaluation's "before", fitting the temperature).
    """

    def __init__(self, run: Run, models: Sequence[str] | None = None,
                 calibrated: bool = True) -> None:
        self.run = run
        self.calibrated = calibrated
        self.class_names = run.class_names
        names = list(models) if models else run.model_names
        self.info = {name: run.model_info(name) for name in names}
        for name in names:
            _check_info(run, name, self.info[name])
        self.models = {name: run.load_model(name) for name in names}
        for name in names:
            _check_model(run, name, self.models[name], int(self.info[name]["image_size"]))
        self._locks = {name: threading.Lock() for name in names}
        self._forward: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        # (calibration.json's mtime, {model: T}, {model: low-confidence threshold})
        self._calibration: tuple[int | None, dict[str, float], dict[str, float]] = (None, {}, {})
        self.temperatures()  # a damaged calibration.json fails here, before any prediction
        self._ood: dict[str, tuple[Any, Any] | None] = {}  # model -> (features fn, OodModel)

    def _calibration_now(self) -> tuple[int | None, dict[str, float], dict[str, float]]:
        """The run's calibration.json, read again only when it changed (a dashboard rerun asks
        for it on every image card)."""
        path = self.run.path / CALIBRATION_FILE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None
        cached = self._calibration
        if stamp != cached[0]:
            cached = (stamp, *(({}, {}) if stamp is None else (
                read_temperatures(self.run.path), read_low_confidence(self.run.path))))
            self._calibration = cached  # one assignment: safe with concurrent readers
        return cached

    def temperatures(self) -> dict[str, float]:
        """{model: T} of the run's calibration.json as it is now ({} without one)."""
        return self._calibration_now()[1]

    def temperature(self, model_name: str) -> float | None:
        """The model's stored temperature (None when not calibrated), applied or not."""
        return self.temperatures().get(model_name)

    def apply_calibration(self, model_name: str, probs: np.ndarray) -> np.ndarray:
        """`probs` (…, C) with the model's temperature applied (as is when none, or when this
        Predictor was made with calibrated=False); float32 like the models' outputs."""
        t = self.temperature(model_name) if self.calibrated else None
        if t is None:
            return probs
        return apply_temperature(probs, t).astype("float32")

    def low_confidence_below(self, model_name: str) -> float | None:
        """Confidence under which this model's validation answers were right less than 90 % of
        the time (`calibration.low_confidence`); None for runs calibrated before it existed."""
        return self._calibration_now()[2].get(model_name)

    def unlike_training(self, model_name: str, x: np.ndarray) -> np.ndarray | None:
        """Per prepared image (N, S, S, 3): whether it is unlike the model's training data (the
        run's out-of-distribution score over its validation threshold, `pipeline.ood`); None
        when the run has no OOD score for this model (`python -m pipeline ood` adds it)."""
        if model_name not in self._ood:
            from pipeline.ood import FeatureExtractor, load_run_ood

            with self._locks[model_name]:
                if model_name not in self._ood:
                    ood = load_run_ood(self.run.path, model_name)
                    self._ood[model_name] = None if ood is None else (
                        FeatureExtractor(self.models[model_name]), ood)
        scorer = self._ood[model_name]
        if scorer is None:
            return None
        extract, ood = scorer
        return ood.flags(extract(np.asarray(x, "float32")))

    def image_size(self, model_name: str) -> int:
        return int(self.info[model_name]["image_size"])

    def prepare(self, model_name: str, img: np.ndarray) -> np.ndarray:
        """Crop (if the model was trained so) and resize one H×W×3 uint8 image."""
        info = self.info[model_name]
        return geometry.prepare_image(img, int(info["image_size"]),
                                      crop=bool(info.get("crop_head")))

    def predict_arrays(self, model_name: str, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, C) for a batch of prepared images (N, S, S, 3), raw 0-255 pixels;
        calibrated (see the class docstring)."""
        size = self.image_size(model_name)
        if x.ndim != 4 or x.shape[1:] != (size, size, 3):
            raise ValueError(f"{model_name} expects a batch of shape (N, {size}, {size}, 3), "
                             f"got {tuple(x.shape)}")
        forward = self._forward_fn(model_name)
        out = [forward(np.asarray(x[i:i + batch_size], dtype="float32"))
               for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, len(self.class_names)), dtype="float32")
        return self.apply_calibration(model_name, np.concatenate(out).astype("float32"))

    def _forward_fn(self, model_name: str) -> Callable[[np.ndarray], np.ndarray]:
        if model_name not in self._forward:
            from pipeline.models import compiled  # Keras only once a model is used

            with self._locks[model_name]:
                if model_name not in self._forward:
                    self._forward[model_name] = compiled(self.models[model_name])
        return self._forward[model_name]

    def predict_images(self, imgs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Per model, probabilities (N, C) for decoded images of any size."""
        result = {}
        for name in self.models:
            x = np.stack([self.prepare(name, im) for im in imgs]) if imgs else np.zeros(
                (0, self.image_size(name), self.image_size(name), 3), dtype="uint8")
            result[name] = self.predict_arrays(name, x)
        return result

    def describe(self, probs: np.ndarray, model_name: str) -> Prediction:
        return Prediction(model_name, self.class_names[int(np.argmax(probs))],
                          {c: float(p) for c, p in zip(self.class_names, probs, strict=True)})


def _check_info(run: Run, name: str, info: dict) -> None:
    size = info.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < images.MIN_SIDE:
        raise ArtifactError(f"damaged manifest of run {run.run_id}: {name} has no valid "
                            f"image_size (got {size!r})")


def _check_model(run: Run, name: str, model, size: int) -> None:
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


def predict_files(predictor: Predictor, paths: Sequence[str | Path], chunk: int = FILE_CHUNK
                  ) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict files; returns (results, failures) where failures are (path, reason).

    Files are decoded `chunk` at a time, so 1000 files no longer mean 1000 decoded images held
    in memory at once (4.7 GB peak RSS before).
    """
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    for start in range(0, len(paths), chunk):
        rows, bad = _predict_chunk(predictor, paths[start:start + chunk])
        results.extend(rows)
        failures.extend(bad)
    return results, failures


def _predict_chunk(predictor: Predictor, paths: Sequence[str | Path]
                   ) -> tuple[list[dict], list[tuple[str, str]]]:
    decoded, results, failures = [], [], []
    for p in paths:
        try:
            decoded.append((str(p), images.read_image(p)))
        except images.ImageError as exc:
            failures.append((str(p), str(exc)))
    if decoded:
        probs = predictor.predict_images([im for _, im in decoded])
        for i, (path, _) in enumerate(decoded):
            row = {"path": path, "models": {}}
            for name, pr in probs.items():
                d = predictor.describe(pr[i], name)
                row["models"][name] = {"label": d.label, "probs": d.probs}
            labels = {m["label"] for m in row["models"].values()}
            row["agree"] = len(labels) == 1
            results.append(row)
    return results, failures

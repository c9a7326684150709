"""The compiled `Explainer`: one per loaded model, gradient graphs built once and reused.

The Explainer holds the pipeline shared by every method (validate the batch and the targets, pick
the layer, look the method up in `methods.REGISTRY`, wrap its result) and everything built per
model: the softmax-free scores model, its compiled forward pass, and a build-once cache in which
each method keeps its own graphs. The methods themselves live in `methods.py`.

Models take raw RGB pixels 0-255 (preprocessing is inside the model), so every image here is
(H, W, 3) in 0-255 at the model's input size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.explain.imputation import NOISE
from pipeline.explain.layers import conv_layers, default_layer, logits_tensor
from pipeline.explain.methods import get_method
from pipeline.predict_checks import pixel_problem

# How far outside 0-255 an explained batch may reach: ROAD's noisy imputation (`imputation`)
# leaves filled pixels a few levels outside it; 10 of its standard deviations, at most 25.5
PIXEL_SLACK = 10 * NOISE * 255


@dataclass
class Explanation:
    """Heatmaps for a batch: (N, H, W) float32 in [0, 1] at the model's input size."""

    heatmaps: np.ndarray
    # (N, C) the explained model's raw softmax, before the run's temperature: the CLI and the
    # dashboard show `Predictor.apply_calibration(model, probs)` (a review read 0.56 here
    # beside 0.65 from predict_images, which calibrates)
    probs: np.ndarray
    targets: np.ndarray  # (N,) int class explained per image
    method: str
    layer: str | None


class Explainer:
    """Explains one loaded model; build once, call many times (also from several threads).

    Plain Grad-CAM is a small hand-written `tf.function` over a two-output model
    (feature map, class scores): tf-keras-vis rebuilds an intermediate model and runs eagerly on
    every call, which costs several times a forward pass; HiResCAM, LayerCAM, Grad-CAM++,
    multi-layer fusion, Score-CAM and SmoothGrad are compiled the same way (SmoothGrad on a
    private softmax-free scores model that shares the weights). Each graph is built on first use
    and kept in `cached`. Per-explainer settings read by the
    slow methods: `scorecam_max_channels`, `smooth_samples`, `smooth_noise`.
    """

    def __repr__(self) -> str:  # a notebook's cell output: what a call explains by default
        return f"<Explainer of {self.model.name}: {self.method} at {self.layer}>"

    def __init__(self, model: keras.Model, layer: str | None = None,
                 method: str | None = None) -> None:
        self.model = model
        # the method used when a call names none (a run's recorded choice, else Grad-CAM)
        self.method = get_method(method or "gradcam").name
        self.valid_layers = conv_layers(model)
        if layer is not None:
            self._check_layer(layer)
        self.layer = layer or default_layer(model)
        # why `layer` is not the run's recorded one (`explain.defaults.explainer_for`), or None
        self.layer_note: str | None = None
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"model {model.name!r} must take (N, H, W, 3) images, takes {shape}")
        self.input_hw: tuple[int | None, int | None] = (shape[1], shape[2])
        self.num_classes = int(model.outputs[0].shape[-1])
        self.scorecam_max_channels = 32  # "fast" Score-CAM: only the 32 most varied channels
        # SmoothGrad noisy copies: Smilkov et al. use 10-50; cost is linear in samples (all
        # copies of an image go through one compiled forward + backward pass)
        self.smooth_samples = 10
        self.smooth_noise = 0.2  # noise std as a share of each image's value range
        # Re-entrant: a method's graph, built under this lock, may need the scores model first.
        self._lock = threading.RLock()
        self._inputs = model.inputs[0]
        self._logits = logits_tensor(model)
        self._scores_model: keras.Model | None = None
        self._forward: Any = None
        self._cache: dict[Hashable, Any] = {}

    # ---- validation ------------------------------------------------------------------------

    def _check_layer(self, layer: str) -> None:
        if layer not in self.valid_layers:
            raise ValueError(
                f"layer {layer!r} not found among the 4-D layers of {self.model.name!r}; "
                f"valid: {', '.join(self.valid_layers)}"
            )

    def _check_images(self, images: Any) -> np.ndarray:
        arr = np.asarray(images)
        h, w = self.input_hw
        expected = f"(N, {h}, {w}, 3)"
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"expected image batch {expected}, got {arr.shape}")
        if (h is not None and arr.shape[1] != h) or (w is not None and arr.shape[2] != w):
            raise ValueError(f"expected image batch {expected}, got {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError("empty image batch")
        problem = pixel_problem(arr, PIXEL_SLACK)  # NaN, inf and 300s gave heatmaps too
        if problem:
            raise ValueError(f"{self.model.name}'s explainer {problem}")
        return arr.astype(np.float32, copy=False)

    def _targets(self, target: int | Sequence[int] | None, n: int) -> np.ndarray:
        if target is None:
            return np.full(n, -1, dtype=np.int32)
        values = np.atleast_1d(np.asarray(target))
        if values.dtype.kind not in "iu":
            raise ValueError(f"target must be a class index or a list of them, got {target!r}")
        if values.size == 1:
            values = np.full(n, int(values[0]))
        if values.shape != (n,):
            raise ValueError(f"target has {values.size} entries for a batch of {n} images")
        bad = [int(v) for v in values if not 0 <= v < self.num_classes]
        if bad:
            raise ValueError(f"target class {bad[0]} out of range 0..{self.num_classes - 1}")
        return values.astype(np.int32)

    # ---- what methods build on (once per model, under a lock) ------------------------------

    def cached(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """`build()`'s result for `key`, built on first use only: methods keep their compiled
        graphs here. Builds run under the lock, so threads calling at
        once never race on the first trace."""
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def scores_model(self) -> keras.Model:
        """The model with pre-softmax class scores as output (shares the weights; built once)."""
        with self._lock:
            if self._scores_model is None:
                # list inputs: tf-keras-vis passes lists, and Keras warns on a structure mismatch
                scores = keras.Model([self._inputs], self._logits, name="scores")
                both = keras.Model([self._inputs], [self._logits, self.model.outputs[0]])
                spec = tf.TensorSpec((None, *self.input_hw, 3), tf.float32)

                @tf.function(input_signature=[spec])
                def forward(x: Any) -> Any:
                    return both([x], training=False)

                # Trace now, under the lock, so threads never race on the first call.
                forward.get_concrete_function()
                self._forward = forward
                # Score-CAM calls `model.predict`: Keras' predict prints a progress bar to
                # stdout and sets up a data pipeline per call; the compiled forward does neither.
                scores.predict = self._predict_scores
                self._scores_model = scores
            return self._scores_model

    def compiled_forward(self) -> Any:
        """The traced tf.function x (N, H, W, 3) float32 -> (logits, probs)."""
        self.scores_model()
        return self._forward

    def feature_model(self, layer: str) -> keras.Model:
        """A model with outputs (feature map of `layer`, logits, probs), sharing the weights."""
        feats = self.model.get_layer(layer).output
        return keras.Model(
            [self._inputs], [feats, self._logits, self.model.outputs[0]], name="gradcam"
        )

    def scores_and_probs(self, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probs) of float32 images x, `batch` images per compiled call."""
        forward = self.compiled_forward()
        parts = [forward(tf.constant(x[i : i + batch])) for i in range(0, len(x), batch)]
        logits = np.concatenate([p[0].numpy() for p in parts])
        probs = np.concatenate([p[1].numpy() for p in parts])
        return logits, probs

    def _predict_scores(self, x: Any, batch_size: int = 32, **_: Any) -> np.ndarray:
        arr = np.asarray(x[0] if isinstance(x, (list, tuple)) else x, dtype=np.float32)
        return self.scores_and_probs(arr, batch_size)[0]

    # ---- public ----------------------------------------------------------------------------

    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """Class probabilities (N, C) for a batch of raw 0-255 images (compiled forward)."""
        return self.scores_and_probs(self._check_images(images), batch)[1]

    def __call__(
        self,
        images: np.ndarray,
        method: str | None = None,
        target: int | Sequence[int] | None = None,
        layer: str | None = None,
    ) -> Explanation:
        """Heatmaps for a batch of raw RGB images (N, H, W, 3) in 0-255.

        `method`: a name from `METHODS` (default `self.method`). `target`: None explains each
        image's predicted class; an int or one int per image explains those classes. `layer`:
        any name from `conv_layers(model)`; default `self.layer` (ignored by methods that read
        pixels).
        """
        spec = get_method(method or self.method)
        if layer is not None:
            self._check_layer(layer)
        use_layer = (layer or self.layer) if spec.needs_layer else None
        x = self._check_images(images)
        targets = self._targets(target, len(x))
        heatmaps, probs, chosen = spec(self, x, targets, use_layer)
        return Explanation(
            heatmaps=heatmaps,
            probs=probs,
            targets=np.asarray(chosen).astype(np.int64),
            method=spec.name,
            layer=use_layer,
        )

"""The compiled `Explainer`: one per loaded model, gradient graphs built once and reused.

Models take raw RGB pixels 0-255 (preprocessing is inside the model), so every image here is
(H, W, 3) in 0-255 at the model's input size.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.explain.layers import conv_layers, default_layer, logits_tensor

METHODS = ("gradcam", "gradcam++", "scorecam", "smoothgrad")
# Methods that read a convolutional feature map (SmoothGrad works on input pixels).
LAYER_METHODS = ("gradcam", "gradcam++", "scorecam")


@dataclass
class Explanation:
    """Heatmaps for a batch: (N, H, W) float32 in [0, 1] at the model's input size."""

    heatmaps: np.ndarray
    probs: np.ndarray  # (N, C) class probabilities of the explained model
    targets: np.ndarray  # (N,) int class explained per image
    method: str
    layer: str | None


class _CompiledModel:
    """The little of a Keras model that tf-keras-vis' Saliency uses, backed by a tf.function.

    Gradients flow through a tf.function, so the tape in Saliency still gets d(score)/d(input).
    """

    def __init__(self, model: keras.Model, forward: Any) -> None:
        self.inputs = model.inputs
        self.outputs = model.outputs
        self._forward = forward

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self._forward(tf.cast(x, tf.float32))[0]


def _minmax_per_sample(cam: Any) -> Any:
    # divide_no_nan rather than "+ epsilon": an untrained model's CAM can span 1e-6, and a fixed
    # epsilon would squash it towards 0 instead of stretching it to [0, 1]; flat maps become 0.
    lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(cam - lo, hi - lo)


class Explainer:
    """Explains one loaded model; build once, call many times (also from several threads).

    Plain Grad-CAM is a small hand-written `tf.function` over a two-output model
    (feature map, class scores): tf-keras-vis rebuilds an intermediate model and runs eagerly on
    every call, which costs several times a forward pass. Grad-CAM++, Score-CAM and SmoothGrad use
    tf-keras-vis objects constructed once on a private scores-model that shares the weights.
    """

    def __init__(self, model: keras.Model, layer: str | None = None) -> None:
        self.model = model
        self.valid_layers = conv_layers(model)
        if layer is not None:
            self._check_layer(layer)
        self.layer = layer or default_layer(model)
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"model {model.name!r} must take (N, H, W, 3) images, takes {shape}")
        self.input_hw: tuple[int | None, int | None] = (shape[1], shape[2])
        self.num_classes = int(model.outputs[0].shape[-1])
        self.scorecam_max_channels = 32  # "fast" Score-CAM: only the 32 most varied channels
        # SmoothGrad noisy copies: Smilkov et al. use 10-50; 10 keeps one 224 px image near 4 s
        # on 2 CPU cores (cost is linear in samples)
        self.smooth_samples = 10
        self.smooth_noise = 0.2  # noise std as a share of each image's value range
        self._lock = threading.Lock()
        self._vis_lock = threading.Lock()
        self._inputs = model.inputs[0]
        self._logits = logits_tensor(model)
        self._scores_model: keras.Model | None = None
        self._forward: Any = None
        self._gradcam_fns: dict[str, Any] = {}
        self._vis: dict[str, Any] = {}

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

    # ---- graph building (once per layer, under a lock) -------------------------------------

    def _get_scores_model(self) -> keras.Model:
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

    def _scores_and_probs(self, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
        self._get_scores_model()
        parts = [self._forward(tf.constant(x[i : i + batch])) for i in range(0, len(x), batch)]
        logits = np.concatenate([p[0].numpy() for p in parts])
        probs = np.concatenate([p[1].numpy() for p in parts])
        return logits, probs

    def _predict_scores(self, x: Any, batch_size: int = 32, **_: Any) -> np.ndarray:
        arr = np.asarray(x[0] if isinstance(x, (list, tuple)) else x, dtype=np.float32)
        return self._scores_and_probs(arr, batch_size)[0]

    def _gradcam_fn(self, layer: str) -> Any:
        with self._lock:
            fn = self._gradcam_fns.get(layer)
            if fn is not None:
                return fn
            feats = self.model.get_layer(layer).output
            grad_model = keras.Model(
                [self._inputs], [feats, self._logits, self.model.outputs[0]], name="gradcam"
            )
            h, w = self.input_hw
            spec_x = tf.TensorSpec((None, h, w, 3), tf.float32)
            spec_t = tf.TensorSpec((None,), tf.int32)

            @tf.function(input_signature=[spec_x, spec_t])
            def gradcam(x: Any, targets: Any) -> tuple[Any, Any, Any]:
                with tf.GradientTape() as tape:
                    fmap, logits, probs = grad_model([x], training=False)
                    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
                    chosen = tf.where(targets < 0, predicted, targets)
                    score = tf.gather(logits, chosen, axis=1, batch_dims=1)
                    # Samples are independent at inference: the sum's gradient is per-sample.
                    total = tf.reduce_sum(score)
                grads = tape.gradient(total, fmap)
                weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                cam = tf.nn.relu(tf.reduce_sum(fmap * weights, axis=-1, keepdims=True))
                size = tf.shape(x)[1:3]
                cam = tf.image.resize(cam, size, method="bilinear")[..., 0]
                return _minmax_per_sample(cam), probs, chosen

            gradcam.get_concrete_function()  # trace once here, not in racing threads
            self._gradcam_fns[layer] = gradcam
            return gradcam

    def _vis_object(self, method: str) -> Any:
        scores = self._get_scores_model()
        with self._lock:
            obj = self._vis.get(method)
            if obj is None:
                # Imported lazily: tf-keras-vis pulls in scipy.ndimage and friends.
                from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
                from tf_keras_vis.saliency import Saliency
                from tf_keras_vis.scorecam import Scorecam

                # clone=False and no model_modifier: the scores model already is the private,
                # softmax-free copy, so nothing is cloned per object or per call.
                if method == "gradcam++":
                    obj = GradcamPlusPlus(scores, clone=False)
                elif method == "scorecam":
                    obj = Scorecam(scores, clone=False)
                else:
                    # Saliency only calls the model: give it the compiled forward so each of the
                    # noisy samples is one graph call instead of an eager pass (measured 7.5 s vs
                    # 19.7 s for 20 samples on MobileNetV2 at 224 px, 2 busy cores).
                    obj = Saliency(_CompiledModel(scores, self._forward), clone=False)
                self._vis[method] = obj
            return obj

    # ---- public ----------------------------------------------------------------------------

    def predict(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """Class probabilities (N, C) for a batch of raw 0-255 images (compiled forward)."""
        return self._scores_and_probs(self._check_images(images), batch)[1]

    def __call__(
        self,
        images: np.ndarray,
        method: str = "gradcam",
        target: int | Sequence[int] | None = None,
        layer: str | None = None,
    ) -> Explanation:
        """Heatmaps for a batch of raw RGB images (N, H, W, 3) in 0-255.

        `target`: None explains each image's predicted class; an int or one int per image
        explains those classes. `layer`: any name from `conv_layers(model)`; default
        `self.layer`.
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if layer is not None:
            self._check_layer(layer)
        use_layer = (layer or self.layer) if method in LAYER_METHODS else None
        x = self._check_images(images)
        targets = self._targets(target, len(x))

        if method == "gradcam":
            assert use_layer is not None
            cam, probs, chosen = self._gradcam_fn(use_layer)(
                tf.constant(x), tf.constant(targets)
            )
            return Explanation(
                heatmaps=cam.numpy().astype(np.float32),
                probs=probs.numpy(),
                targets=chosen.numpy().astype(np.int64),
                method=method,
                layer=use_layer,
            )

        logits, probs = self._scores_and_probs(x)
        chosen = np.where(targets < 0, logits.argmax(axis=1), targets).astype(np.int32)
        heatmaps = self._vis_heatmaps(method, x, chosen, use_layer)
        # A flat or degenerate map must not leak NaN into overlays and metrics.
        heatmaps = np.nan_to_num(heatmaps, nan=0.0, posinf=0.0, neginf=0.0)
        return Explanation(
            heatmaps=np.clip(heatmaps, 0.0, 1.0).astype(np.float32),
            probs=probs,
            targets=chosen.astype(np.int64),
            method=method,
            layer=use_layer,
        )

    def _vis_heatmaps(
        self, method: str, x: np.ndarray, chosen: np.ndarray, layer: str | None
    ) -> np.ndarray:
        vis = self._vis_object(method)
        onehot = tf.one_hot(chosen, self.num_classes)

        def class_score(out: Any) -> Any:
            return tf.reduce_sum(out * onehot, axis=-1)

        # tf-keras-vis builds an intermediate model per call; the Keras graph bookkeeping that
        # does is not documented as thread-safe, so these calls take turns.
        with self._vis_lock:
            if method == "gradcam++":
                # Grad-CAM++ multiplies by exp(score); subtracting the (constant) top score keeps
                # exp() finite and cancels out in the normalised map.
                def shifted(out: Any) -> Any:
                    return class_score(out) - tf.stop_gradient(tf.reduce_max(out, axis=-1))

                cam = vis(
                    shifted, x, penultimate_layer=layer, seek_penultimate_conv_layer=False
                )
            elif method == "scorecam":
                # One image per call: tf-keras-vis masks every image with the channels chosen for
                # any image of the batch, which is quadratic in the batch size.
                n_channels = int(self.model.get_layer(layer).output.shape[-1])
                cap = min(self.scorecam_max_channels, n_channels)
                cams = []
                for i in range(len(x)):
                    oh = onehot[i : i + 1]
                    cams.append(
                        vis(
                            lambda out, oh=oh: tf.reduce_sum(out * oh, axis=-1),
                            x[i : i + 1],
                            penultimate_layer=layer,
                            seek_penultimate_conv_layer=False,
                            max_N=cap,
                        )
                    )
                cam = np.concatenate([np.reshape(c, (1, *x.shape[1:3])) for c in cams])
            else:
                cam = vis(
                    class_score, x, smooth_samples=self.smooth_samples,
                    smooth_noise=self.smooth_noise,
                )
        cam = np.reshape(np.asarray(cam, dtype=np.float32), x.shape[:3])
        # tf-keras-vis divides by (max - min + 1e-7): tiny raw gradients (SmoothGrad) then peak
        # well below 1. Re-normalise so every method's map spans [0, 1] like Grad-CAM's.
        lo = cam.min(axis=(1, 2), keepdims=True)
        span = cam.max(axis=(1, 2), keepdims=True) - lo
        return np.where(span > 0, (cam - lo) / np.where(span > 0, span, 1.0), 0.0)

"""Explanations: Grad-CAM family, overlays and measured explanation quality.

Pure functions and small callable objects only (no Streamlit); the dashboard and the CLI share them.

* `Explainer(model)` builds its gradient graph once per (method, layer) and reuses it, so a
  Grad-CAM costs about one forward plus one backward pass.
* `render_overlay`, `heatmap_to_rgb`, `to_png`: drawing.
* `pointing_game`, `energy_in_mask`, `deletion_insertion`, `randomize_model`, `spearman`: quality
  metrics on plain arrays; `explain_eval` runs them over a run's test split.

Models take raw RGB pixels 0-255 (preprocessing is inside the model), so every image here is
(H, W, 3) in 0-255 at the model's input size.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from pipeline.names import IMAGE_EXTS, Progress

METHODS = ("gradcam", "gradcam++", "scorecam", "smoothgrad")
# Methods that read a convolutional feature map (SmoothGrad works on input pixels).
LAYER_METHODS = ("gradcam", "gradcam++", "scorecam")
BASELINES = ("blur", "black")


_CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)


# --------------------------------------------------------------------------------------------
# Layers and model surgery
# --------------------------------------------------------------------------------------------


def _layer_output(layer: keras.layers.Layer) -> Any | None:
    """The layer's single symbolic output, or None when it has several (shared layers)."""
    try:
        return layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None


def conv_layers(model: keras.Model) -> list[str]:
    """Names of top-level layers with 4-D outputs usable as Grad-CAM targets, last first.

    Layers before the first convolution (input, rescaling, augmentation) are left out: a "CAM" on
    them is just a gradient times the image.
    """
    names: list[str] = []
    seen_conv = False
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, (*_CONV_TYPES, keras.Model)):
            seen_conv = True
        if not seen_conv:
            continue
        out = _layer_output(layer)
        if out is not None and len(out.shape) == 4:
            names.append(layer.name)
    return names[::-1]


def default_layer(model: keras.Model) -> str:
    """The Grad-CAM layer used when none is given.

    Order: a `gradcam_layer` attribute on the model, a layer named `gradcam_target` (the custom
    CNN's convention), then the last 4-D layer.
    """
    names = conv_layers(model)
    if not names:
        raise ValueError(f"model {model.name!r} has no layer with a 4-D output to explain")
    attr = getattr(model, "gradcam_layer", None)
    if isinstance(attr, str) and attr in names:
        return attr
    if "gradcam_target" in names:
        return "gradcam_target"
    return names[0]


class _Logits(keras.layers.Layer):
    """Recomputes a softmax Dense layer without its activation, sharing its variables.

    Grad-CAM needs the class score before the softmax (the softmax couples the classes and
    saturates). tf-keras-vis would clone the model and swap the activation; sharing the variables
    of the existing layer avoids the copy and cannot go stale.
    """

    def __init__(self, dense: keras.layers.Dense, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x: Any) -> Any:
        y = keras.ops.matmul(x, self.dense.kernel)
        if self.dense.use_bias:
            y = y + self.dense.bias
        return y


def _output_layer(model: keras.Model) -> keras.layers.Layer:
    history = getattr(model.outputs[0], "_keras_history", None)
    if history is not None:
        return history[0]
    return model.layers[-1]


def _logits_tensor(model: keras.Model) -> Any:
    """Symbolic pre-softmax class scores of `model`, built on its own graph."""
    if len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} must have one output, has {len(model.outputs)}")
    last = _output_layer(model)
    activation = getattr(last, "activation", None)
    act_name = getattr(activation, "__name__", "")
    if isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and act_name == "softmax"
    ):
        return last.input
    if isinstance(last, keras.layers.Dense) and act_name == "softmax":
        return _Logits(last, name=f"{last.name}_logits")(last.input)
    if act_name == "linear":
        return model.outputs[0]
    # Unknown head: log-probabilities keep the class ranking and are still differentiable.
    return keras.layers.Lambda(lambda p: keras.ops.log(p + 1e-7), name="log_probs")(
        model.outputs[0]
    )


# --------------------------------------------------------------------------------------------
# Explainer
# --------------------------------------------------------------------------------------------


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
        self._logits = _logits_tensor(model)
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




# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _colormap_code(name: str) -> int:
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if not isinstance(code, int):
        valid = sorted(k[9:].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(valid)}")
    return code


def _check_heatmap(heatmap: Any) -> np.ndarray:
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or min(hm.shape) == 0:
        raise ValueError(f"heatmap must be 2-D (h, w), got shape {hm.shape}")
    return np.nan_to_num(hm, nan=0.0)


def _resize_heatmap(heatmap: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if heatmap.shape == hw:
        return heatmap
    return cv2.resize(heatmap, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def heatmap_to_rgb(
    heatmap: np.ndarray, colormap: str = "jet", size: tuple[int, int] | None = None
) -> np.ndarray:
    """Colour a [0, 1] heatmap with an OpenCV colour map; (H, W, 3) uint8 RGB.

    `size` = (height, width) to resize to first; values outside [0, 1] are clipped.
    """
    hm = _check_heatmap(heatmap)
    if size is not None:
        hm = _resize_heatmap(hm, (int(size[0]), int(size[1])))
    u8 = np.round(np.clip(hm, 0.0, 1.0) * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, _colormap_code(colormap))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def top_region(heatmap: np.ndarray, top_percent: float) -> np.ndarray:
    """Boolean mask of the `top_percent` % highest heatmap pixels (ties may add a few more)."""
    if not 0 < top_percent <= 100:
        raise ValueError(f"top percent must be in (0, 100], got {top_percent}")
    hm = _check_heatmap(heatmap)
    threshold = np.percentile(hm, 100.0 - top_percent)
    region = hm >= threshold
    if hm.max() <= 0:  # a flat zero map has no "most relevant" region
        region[:] = False
    return region


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    colormap: str = "jet",
    outline_top_percent: float | None = None,
) -> np.ndarray:
    """Blend a coloured heatmap over an RGB uint8 image; (H, W, 3) uint8.

    The heatmap is resized to the image. `alpha` is the heatmap's opacity (0 = image only).
    `outline_top_percent` draws the contour of the top-k % heatmap region in white.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = np.clip(img, 0, 255).astype(np.uint8)
    hw = (img.shape[0], img.shape[1])
    hm = _resize_heatmap(_check_heatmap(heatmap), hw)
    colour = heatmap_to_rgb(hm, colormap)
    out = cv2.addWeighted(img, 1.0 - alpha, colour, alpha, 0.0)
    if outline_top_percent is not None:
        region = top_region(hm, outline_top_percent).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(min(hw) / 150))
        cv2.drawContours(out, contours, -1, (255, 255, 255), thickness, lineType=cv2.LINE_AA)
    return out


def to_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) RGB or (H, W) grey uint8 array (floats in [0, 1] are scaled)."""
    a = np.asarray(arr)
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    elif a.ndim != 2:
        raise ValueError(f"to_png takes (H, W, 3) or (H, W) arrays, got shape {a.shape}")
    ok, buf = cv2.imencode(".png", a)
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {a.shape}")
    return buf.tobytes()


def heatmap_stats(heatmap: np.ndarray) -> dict[str, Any]:
    """Summary of one heatmap for JSON reports.

    `peak` = (y, x) of the maximum as fractions of height/width; `area_above_half` = share of
    pixels above 0.5; `spread` = Shannon entropy of the map seen as a distribution, divided by its
    maximum (0 = one hot pixel, 1 = perfectly flat); `centroid` = energy-weighted (y, x).
    """
    hm = np.clip(_check_heatmap(heatmap), 0.0, None)
    h, w = hm.shape
    py, px = np.unravel_index(int(np.argmax(hm)), hm.shape)
    total = float(hm.sum())
    if total > 0:
        p = hm.ravel() / total
        nz = p[p > 0]
        spread = float(-(nz * np.log(nz)).sum() / math.log(hm.size)) if hm.size > 1 else 0.0
        ys, xs = np.mgrid[0:h, 0:w]
        centroid = [float((ys * hm).sum() / total / max(h - 1, 1)),
                    float((xs * hm).sum() / total / max(w - 1, 1))]
    else:
        spread, centroid = 1.0, [0.5, 0.5]
    return {
        "peak": [float(py / max(h - 1, 1)), float(px / max(w - 1, 1))],
        "peak_value": float(hm.max()),
        "mean": float(hm.mean()),
        "area_above_half": float((hm > 0.5).mean()),
        "spread": spread,
        "centroid": centroid,
    }


# --------------------------------------------------------------------------------------------
# Quality metrics on plain arrays
# --------------------------------------------------------------------------------------------


def _mask_like(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (h, w), got shape {np.asarray(mask).shape}")
    m = m > 0
    if m.shape != shape:
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]),
                       interpolation=cv2.INTER_NEAREST) > 0
    return m


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """True when the heatmap's maximum lies inside the (non-zero) mask.

    The mask is resized (nearest) to the heatmap when their sizes differ. An empty mask has no
    target to point at and raises ValueError.
    """
    hm = _check_heatmap(heatmap)
    m = _mask_like(mask, hm.shape)
    if not m.any():
        raise ValueError("pointing game needs a non-empty mask")
    return bool(m.flat[int(np.argmax(hm))])


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's total (non-negative) energy inside the mask, in [0, 1].

    NaN for an all-zero heatmap (no energy to share out).
    """
    hm = np.clip(_check_heatmap(heatmap), 0.0, None)
    m = _mask_like(mask, hm.shape)
    total = float(hm.sum())
    if total <= 0:
        return float("nan")
    return float(hm[m].sum() / total)


def random_heatmap(shape: tuple[int, int], seed: int = 0, cells: int = 7) -> np.ndarray:
    """A smooth random map in [0, 1]: uniform noise on a `cells` x `cells` grid, upsampled.

    Used as the faithfulness baseline: it has blobs like a CAM at the last conv layer, so a real
    heatmap must beat a map of the same coarseness, not just pixel noise.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.random((cells, cells)).astype(np.float32)
    fine = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    fine += rng.random(shape).astype(np.float32) * 1e-3  # break ties between equal pixels
    lo, hi = float(fine.min()), float(fine.max())
    return (fine - lo) / (hi - lo + 1e-7)


def baseline_image(image: np.ndarray, baseline: str = "blur") -> np.ndarray:
    """What "removed" pixels become: a heavy Gaussian blur of the image, or black."""
    img = np.asarray(image, dtype=np.float32)
    if baseline == "black":
        return np.zeros_like(img)
    if baseline == "blur":
        # sigma = 1/10 of the side: wipes out tumour-sized detail but keeps the head's outline
        sigma = max(img.shape[0], img.shape[1]) / 10.0
        return cv2.GaussianBlur(img, (0, 0), sigma)
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")


def deletion_insertion(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    heatmap: np.ndarray,
    target: int,
    steps: int = 20,
    baseline: str = "blur",
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Deletion and insertion curves (Petsiuk et al., 2018) for one image.

    Pixels are ranked by the heatmap (resized to the image), most relevant first. Deletion
    replaces the top k/steps share with the baseline and tracks the target probability (lower
    AUC = more faithful); insertion starts from the baseline and puts the top pixels back (higher
    AUC = more faithful). All 2 * (steps + 1) images go through `predict_fn` in one call;
    `predict_fn` maps (N, H, W, 3) 0-255 images to (N, C) probabilities.
    Returns (deletion_curve, insertion_curve, deletion_auc, insertion_auc); curves have
    steps + 1 points at fractions 0, 1/steps, ..., 1.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {img.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    h, w = img.shape[:2]
    hm = _resize_heatmap(_check_heatmap(heatmap), (h, w))
    base = baseline_image(img, baseline)
    # Rank pixels by relevance; equal values are ordered at random (fixed seed) rather than in
    # raster order, which would always delete the top rows first.
    tie = np.random.default_rng(0).random(h * w)
    order = np.lexsort((tie, -hm.ravel()))
    rank = np.empty(h * w, dtype=np.int64)
    rank[order] = np.arange(h * w)
    rank = rank.reshape(h, w)
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64)
    top = rank[None, :, :] < counts[:, None, None]  # (steps + 1, H, W)
    top = top[..., None]
    deleted = np.where(top, base[None], img[None])
    inserted = np.where(top, img[None], base[None])
    probs = np.asarray(predict_fn(np.concatenate([deleted, inserted]).astype(np.float32)))
    if probs.ndim != 2 or probs.shape[0] != 2 * (steps + 1):
        raise ValueError(f"predict_fn returned shape {probs.shape}, expected "
                         f"({2 * (steps + 1)}, C)")
    if not 0 <= target < probs.shape[1]:
        raise ValueError(f"target class {target} out of range 0..{probs.shape[1] - 1}")
    curve = probs[:, int(target)].astype(np.float64)
    deletion, insertion = curve[: steps + 1], curve[steps + 1 :]
    dx = 1.0 / steps
    return deletion, insertion, float(np.trapezoid(deletion, dx=dx)), float(
        np.trapezoid(insertion, dx=dx)
    )


def _reseed(obj: Any, seeds: Any) -> Any:
    """Copy of a layer config with a fresh integer seed in every seeded initializer."""
    if isinstance(obj, dict):
        out = {k: _reseed(v, seeds) for k, v in obj.items()}
        if "class_name" in obj and isinstance(obj.get("config"), dict) and "seed" in obj["config"]:
            out["config"] = {**out["config"], "seed": next(seeds)}
        return out
    if isinstance(obj, list):
        return [_reseed(v, seeds) for v in obj]
    return obj


def randomize_model(model: keras.Model, seed: int = 0, top_layers: int | None = None
                    ) -> keras.Model:
    """A copy of `model` with re-initialised weights (model-randomisation sanity check).

    `top_layers=None` randomises every layer (full randomisation); `top_layers=k` randomises the
    k weighted layers nearest the output and keeps the trained weights below (one step of the
    cascading randomisation of Adebayo et al., 2018). Each initializer gets its own seed derived
    from `seed`, so the result is reproducible without touching the global random state.
    """
    seeds = iter(range(seed * 100_003 + 1, seed * 100_003 + 1_000_000))

    def fresh(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config(_reseed(layer.get_config(), seeds))

    clone = keras.models.clone_model(model, clone_function=fresh)
    if top_layers is not None:
        if top_layers < 0:
            raise ValueError(f"top_layers must be >= 0, got {top_layers}")
        weighted = [layer.name for layer in model.layers if layer.weights]
        keep = weighted[: max(0, len(weighted) - top_layers)]
        for name in keep:
            clone.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return clone


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened; resized to `a` if shapes differ).

    NaN when either map is constant (no ranking to compare).
    """
    x = _check_heatmap(a)
    y = _resize_heatmap(_check_heatmap(b), x.shape)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x.ravel(), y.ravel()).statistic)


# --------------------------------------------------------------------------------------------
# Masks in model coordinates
# --------------------------------------------------------------------------------------------


def head_box(img: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region `images.crop_to_head` keeps from `img`.

    Located by finding the crop inside the image (exact match) instead of repeating the
    thresholding here, so masks follow `crop_to_head` even if its method changes.
    """
    from pipeline import images

    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"head_box takes (H, W, 3) uint8 images, got {img.shape} {img.dtype}")
    crop = images.crop_to_head(img)
    h, w = img.shape[:2]
    ch, cw = crop.shape[:2]
    if (ch, cw) == (h, w):
        return 0, 0, w, h
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    cgray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    res = cv2.matchTemplate(gray.astype(np.float32), cgray.astype(np.float32), cv2.TM_SQDIFF)
    _, _, (x0, y0), _ = cv2.minMaxLoc(res)
    if not np.array_equal(img[y0 : y0 + ch, x0 : x0 + cw], crop):
        raise ValueError(f"could not locate the head crop ({ch}x{cw}) in an image of {h}x{w}")
    return int(x0), int(y0), int(x0 + cw), int(y0 + ch)


def prepare_mask(mask: np.ndarray, image: np.ndarray, size: int, crop: bool) -> np.ndarray:
    """Bring a tumour mask into the model's frame: the same crop, padding and resize as
    `images.prepare_image(image, size, crop)`. Returns a (size, size) bool array."""
    from pipeline import images

    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape != image.shape[:2]:
        raise ValueError(f"mask shape {m.shape} differs from its image's {image.shape[:2]}")
    m = (m > 0).astype(np.float32)
    if crop:
        x0, y0, x1, y1 = head_box(image)
        m = m[y0:y1, x0:x1]
    m = images.pad_to_square(m)
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    out = m >= 0.5
    if not out.any() and m.max() > 0:  # a tiny lesion must not vanish when downscaled
        out = m >= m.max() / 2
    return out


# --------------------------------------------------------------------------------------------
# explain-eval: measured quality of a run's explanations
# --------------------------------------------------------------------------------------------



def find_mask(masks_dir: Path, rel: str) -> Path | None:
    """The mask of image `rel`: `masks_dir/rel`, or the same stem with another image extension."""
    direct = masks_dir / rel
    if direct.is_file():
        return direct
    stem = (masks_dir / rel).with_suffix("")
    for ext in sorted(IMAGE_EXTS):
        for cand in (stem.with_suffix(ext), stem.with_suffix(ext.upper())):
            if cand.is_file():
                return cand
    return None


def _pick(records: list[dict[str, str]], max_images: int, seed: int) -> list[dict[str, str]]:
    """Up to `max_images` test records, balanced over labels, reproducible for a seed."""
    by_label: dict[str, list[dict[str, str]]] = {}
    for rec in sorted(records, key=lambda r: r["path"]):
        by_label.setdefault(rec["label"], []).append(rec)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_label.items())]
    out: list[dict[str, str]] = []
    while len(out) < max_images and any(queues):
        for q in queues:
            if q and len(out) < max_images:
                out.append(q.pop(0))
    return out


def _nanmean(values: Sequence[float | None]) -> float | None:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def explain_model(
    model: keras.Model,
    images_: np.ndarray,
    targets: np.ndarray,
    masks: Sequence[np.ndarray | None],
    method: str = "gradcam",
    layer: str | None = None,
    steps: int = 20,
    baseline: str = "blur",
    seed: int = 0,
    batch: int = 16,
    progress: Progress | None = None,
    label: str = "explain-eval",
) -> dict[str, Any]:
    """All explanation-quality metrics of one model on prepared images (N, S, S, 3).

    `targets`: the class explained per image; `masks`: (S, S) bool tumour masks or None (no mask
    known or no tumour). Returns the aggregate keys of explanations.json plus per-image `rows`
    (without paths).
    """
    n = len(images_)
    if n == 0:
        raise ValueError("no images to evaluate")
    explainer = Explainer(model, layer)
    random_explainer = Explainer(randomize_model(model, seed), explainer.layer)
    total = 3 * n
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(label, done, total)

    tick(0)
    heat, probs, rand_heat = [], [], []
    for i in range(0, n, batch):
        xb, tb = images_[i : i + batch], targets[i : i + batch]
        ex = explainer(xb, method=method, target=[int(t) for t in tb])
        heat.append(ex.heatmaps)
        probs.append(ex.probs)
        rand_heat.append(random_explainer(xb, method=method, target=[int(t) for t in tb]).heatmaps)
        tick(2 * len(xb))
    heatmaps, prob, rheat = np.concatenate(heat), np.concatenate(probs), np.concatenate(rand_heat)

    rows: list[dict[str, Any]] = []
    del_curves, ins_curves, del_rand, ins_rand = [], [], [], []
    for i in range(n):
        t = int(targets[i])
        d, ins, dauc, iauc = deletion_insertion(
            explainer.predict, images_[i], heatmaps[i], t, steps, baseline
        )
        noise = random_heatmap(heatmaps[i].shape, seed=seed * 7919 + i)
        dr, ir, dauc_r, iauc_r = deletion_insertion(
            explainer.predict, images_[i], noise, t, steps, baseline
        )
        del_curves.append(d)
        ins_curves.append(ins)
        del_rand.append(dr)
        ins_rand.append(ir)
        mask = masks[i]
        has_mask = mask is not None and bool(np.any(mask))
        rows.append({
            "target": t,
            "predicted": int(np.argmax(prob[i])),
            "p_target": float(prob[i, t]),
            "correct": bool(int(np.argmax(prob[i])) == t),
            "pointing_hit": pointing_game(heatmaps[i], mask) if has_mask else None,
            "energy_in_mask": _finite(energy_in_mask(heatmaps[i], mask)) if has_mask else None,
            "mask_fraction": float(np.mean(mask)) if has_mask else None,
            "deletion_auc": dauc,
            "insertion_auc": iauc,
            "deletion_auc_random": dauc_r,
            "insertion_auc_random": iauc_r,
            "sanity_rank_correlation": _finite(spearman(heatmaps[i], rheat[i])),
            "peak": heatmap_stats(heatmaps[i])["peak"],
        })
        tick(1)

    loc = [r for r in rows if r["pointing_hit"] is not None]
    loc_correct = [r for r in loc if r["correct"]]
    return {
        "method": method,
        "layer": explainer.layer if method in LAYER_METHODS else None,
        "n": n,
        "n_localisation": len(loc),
        "pointing_game": _nanmean([float(r["pointing_hit"]) for r in loc]),
        "pointing_game_correct": _nanmean([float(r["pointing_hit"]) for r in loc_correct]),
        "n_localisation_correct": len(loc_correct),
        "pointing_game_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "energy_in_mask": _nanmean([r["energy_in_mask"] for r in loc]),
        "energy_in_mask_chance": _nanmean([r["mask_fraction"] for r in loc]),
        "deletion_auc": _nanmean([r["deletion_auc"] for r in rows]),
        "deletion_auc_random": _nanmean([r["deletion_auc_random"] for r in rows]),
        "insertion_auc": _nanmean([r["insertion_auc"] for r in rows]),
        "insertion_auc_random": _nanmean([r["insertion_auc_random"] for r in rows]),
        "sanity_rank_correlation": _nanmean([r["sanity_rank_correlation"] for r in rows]),
        "sanity_abs_rank_correlation": _nanmean(
            [abs(r["sanity_rank_correlation"]) if r["sanity_rank_correlation"] is not None
             else None for r in rows]),
        "accuracy": _nanmean([float(r["correct"]) for r in rows]),
        "curve_fractions": np.linspace(0.0, 1.0, steps + 1).tolist(),
        "deletion_curve": np.mean(del_curves, axis=0).tolist(),
        "insertion_curve": np.mean(ins_curves, axis=0).tolist(),
        "deletion_curve_random": np.mean(del_rand, axis=0).tolist(),
        "insertion_curve_random": np.mean(ins_rand, axis=0).tolist(),
        "baseline": baseline,
        "steps": steps,
        "rows": rows,
    }


def explain_eval(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    method: str = "gradcam",
    max_images: int = 64,
    progress: Progress | None = None,
    models: Sequence[str] | None = None,
    steps: int = 20,
    baseline: str = "blur",
    seed: int = 0,
    layer: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure each model's explanations on the run's test split; write
    `<run>/<model>/explanations.json` and return {model: results}.

    Images come from `data_dir` (default: the manifest's data folder) at the test split's
    relative paths; masks from `masks_dir` (default `<data_dir>/masks`) at the same relative
    paths, non-zero = tumour. Each image is explained for its TRUE class (as in the pointing game
    literature); localisation uses the images with a non-empty mask and is null, with a reason,
    when there are none (real data). `layer` overrides the manifest's `gradcam_layer` (it must
    exist in every selected model).
    """
    from pipeline import images
    from pipeline.artifacts import open_run, read_json, utc_now, write_json_atomic

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    run = open_run(run_dir)
    data = Path(data_dir) if data_dir is not None else run.data_dir
    if data is None or not data.is_dir():
        raise ValueError(f"data folder {data} not found; pass data_dir (--data)")
    masks_root = Path(masks_dir) if masks_dir is not None else data / "masks"
    if masks_dir is not None and not masks_root.is_dir():
        raise ValueError(f"masks folder {masks_root} does not exist")
    splits = read_json(run.path / "splits.json")
    test = [r for r in splits.get("test", []) if r.get("label") in run.class_names]
    if not test:
        raise ValueError(f"run {run.run_id} has no test images with known labels in splits.json")
    chosen = _pick(test, max_images, seed)
    names = list(models) if models else run.model_names
    for name in names:
        run.model_info(name)  # unknown names fail here, before any work

    # Decode each image and mask once; every model prepares them at its own size.
    decoded: list[tuple[dict[str, str], np.ndarray, np.ndarray | None]] = []
    failed: list[dict[str, str]] = []
    n_masks = 0
    for rec in chosen:
        try:
            img = images.read_image(data / rec["path"])
        except (images.ImageError, OSError) as exc:
            failed.append({"path": rec["path"], "error": str(exc)})
            continue
        mask = None
        mpath = find_mask(masks_root, rec["path"]) if masks_root.is_dir() else None
        if mpath is not None:
            try:
                mask = images.read_image(mpath).max(axis=2)
                n_masks += 1
            except (images.ImageError, OSError) as exc:
                failed.append({"path": str(mpath), "error": f"mask: {exc}"})
        decoded.append((rec, img, mask))
    if not decoded:
        raise ValueError(f"none of the {len(chosen)} test images could be read from {data}")

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        info = run.model_info(name)
        size, crop = int(info["image_size"]), bool(info.get("crop_head", False))
        t0 = time.perf_counter()
        x = np.stack([images.prepare_image(img, size, crop=crop) for _, img, _ in decoded])
        targets = np.array([run.class_names.index(rec["label"]) for rec, _, _ in decoded])
        masks: list[np.ndarray | None] = []
        for rec, img, mask in decoded:
            if mask is None:
                masks.append(None)
                continue
            try:
                masks.append(prepare_mask(mask, img, size, crop))
            except ValueError as exc:
                failed.append({"path": rec["path"], "error": f"mask: {exc}"})
                masks.append(None)
        model = run.load_model(name)
        use_layer = layer or info.get("gradcam_layer")
        if layer is None and use_layer not in conv_layers(model):
            use_layer = None  # recorded layer missing: fall back to the default rather than fail
        if method not in LAYER_METHODS:
            use_layer = None
        res = explain_model(model, x, targets, masks, method=method, layer=use_layer, steps=steps,
                            baseline=baseline, seed=seed, progress=progress,
                            label=f"explain-eval {name}")
        for row, (rec, _, _) in zip(res["rows"], decoded, strict=True):
            row["path"] = rec["path"]
            row["label"] = rec["label"]
        if res["n_localisation"] == 0:
            reason = (f"no masks found under {masks_root}" if n_masks == 0 else
                      "no test image has a non-empty tumour mask")
            res["localisation_reason"] = reason
        out = {
            "run_id": run.run_id,
            "model": name,
            **{k: v for k, v in res.items() if k != "rows"},
            "target_mode": "true",
            "data_dir": str(data),
            "masks_dir": str(masks_root) if n_masks else None,
            "n_failed": len(failed),
            "failed": failed[:20],
            "seconds": round(time.perf_counter() - t0, 2),
            "created": utc_now(),
            "rows": res["rows"],
        }
        write_json_atomic(run.path / name / "explanations.json", out)
        results[name] = out
    return results

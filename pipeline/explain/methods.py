"""The explanation methods: one small class each, found by name in `REGISTRY`.

Where they live: the gradient CAMs (Grad-CAM, HiResCAM, LayerCAM, multi-layer fusion) in
`cams.py` with the compiled Score-CAM, the compiled SmoothGrad in `smoothgrad.py`, the
tf-keras-vis Grad-CAM++ here; `base.Method` is the interface.

A method only computes heatmaps; the `Explainer` validates the request, picks the layer, and
holds everything built per model (its compiled graphs and tf-keras-vis objects, cached through
`Explainer.cached`). Method objects are therefore stateless and one instance serves every model
and thread.

Adding a method: write a `Method` subclass (its `name`, `label`, `needs_layer`, `cost` and
`__call__`; or a `_VisMethod` subclass with `build` and `run` for a tf-keras-vis method), then add
one instance to the tuple that builds `REGISTRY`. `METHODS`, `LAYER_METHODS`, `METHOD_LABELS`,
the CLI's and explain-eval's checks and the dashboard's choice of methods follow from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.explain.base import Method, Result
from pipeline.explain.cams import (
    GradCam,
    GradCamFusion,
    HiResCam,
    LayerCam,
    LayerCamFusion,
    ScoreCam,
)
from pipeline.explain.smoothgrad import SmoothGrad

if TYPE_CHECKING:
    from pipeline.explain.explainer import Explainer

__all__ = ["REGISTRY", "METHODS", "LAYER_METHODS", "METHOD_LABELS", "Method", "Result",
           "get_method"]

# ---- tf-keras-vis methods -------------------------------------------------------------------


class _VisMethod(Method):
    """A method computed by a tf-keras-vis object, built once per explainer on its softmax-free
    scores model (`build`) and called per batch (`run`)."""

    def build(self, explainer: Explainer) -> Any:
        """The tf-keras-vis object for this explainer's model."""
        raise NotImplementedError

    def run(self, vis: Any, explainer: Explainer, x: np.ndarray, onehot: Any,
            layer: str | None) -> Any:
        """Raw maps (N, H, W) from `vis` for the classes in `onehot` (N, C)."""
        raise NotImplementedError

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        import tensorflow as tf

        logits, probs = explainer.scores_and_probs(x)
        chosen = np.where(targets < 0, logits.argmax(axis=1), targets).astype(np.int32)
        # `build` imports tf-keras-vis lazily: it pulls in scipy.ndimage and friends.
        vis = explainer.cached(self.name, lambda: self.build(explainer))
        onehot = tf.one_hot(chosen, explainer.num_classes)
        # tf-keras-vis builds an intermediate model per call; the Keras graph bookkeeping that
        # does is not documented as thread-safe, so these calls take turns.
        with explainer.vis_lock:
            cam = self.run(vis, explainer, x, onehot, layer)
        cam = np.reshape(np.asarray(cam, dtype=np.float32), x.shape[:3])
        # tf-keras-vis divides by (max - min + 1e-7): tiny raw gradients (SmoothGrad) then peak
        # well below 1. Re-normalise so every method's map spans [0, 1] like Grad-CAM's.
        lo = cam.min(axis=(1, 2), keepdims=True)
        span = cam.max(axis=(1, 2), keepdims=True) - lo
        heatmaps = np.where(span > 0, (cam - lo) / np.where(span > 0, span, 1.0), 0.0)
        # A flat or degenerate map must not leak NaN into overlays and metrics.
        heatmaps = np.nan_to_num(heatmaps, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(heatmaps, 0.0, 1.0).astype(np.float32), probs, chosen


def _class_score(onehot: Any) -> Any:
    """tf-keras-vis score function: each image's score for its own class."""
    import tensorflow as tf

    return lambda out: tf.reduce_sum(out * onehot, axis=-1)


class GradCamPlusPlus(_VisMethod):
    """Grad-CAM++ (Chattopadhay et al., 2018), by tf-keras-vis."""

    name = "gradcam++"
    label = "Grad-CAM++"

    def build(self, explainer: Explainer) -> Any:
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

        # clone=False and no model_modifier: the scores model already is the private,
        # softmax-free copy, so nothing is cloned per object or per call.
        return GradcamPlusPlus(explainer.scores_model(), clone=False)

    def run(self, vis: Any, explainer: Explainer, x: np.ndarray, onehot: Any,
            layer: str | None) -> Any:
        import tensorflow as tf

        class_score = _class_score(onehot)

        # Grad-CAM++ multiplies by exp(score); subtracting the (constant) top score keeps
        # exp() finite and cancels out in the normalised map.
        def shifted(out: Any) -> Any:
            return class_score(out) - tf.stop_gradient(tf.reduce_max(out, axis=-1))

        return vis(shifted, x, penultimate_layer=layer, seek_penultimate_conv_layer=False)


# The registry: name -> method, in the order the CLI and the dashboard list them.
REGISTRY: dict[str, Method] = {
    m.name: m for m in (GradCam(), HiResCam(), LayerCam(), GradCamFusion(), LayerCamFusion(),
                        GradCamPlusPlus(), ScoreCam(), SmoothGrad())
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
# Methods that read a convolutional feature map (SmoothGrad works on input pixels).
LAYER_METHODS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.needs_layer)
METHOD_LABELS: dict[str, str] = {n: m.label for n, m in REGISTRY.items()}


def get_method(name: str) -> Method:
    """The registered method called `name`; ValueError naming the valid ones otherwise."""
    method = REGISTRY.get(name)
    if method is None:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return method

"""The explanation methods: one small class each, found by name in `REGISTRY`.

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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import keras

    from pipeline.explain.explainer import Explainer

# (heatmaps (N, H, W) float32 in [0, 1], probs (N, C), explained class per image (N,))
Result = tuple[np.ndarray, np.ndarray, np.ndarray]


class Method:
    """One explanation method (a stateless singleton in `REGISTRY`).

    `name`: what the CLI, the manifest and explanations.json say; `label`: what people read;
    `needs_layer`: reads a convolutional feature map (the Explainer passes a layer) rather than
    input pixels (layer None); `cost`: "fast" = about one forward and one backward pass per batch,
    "slow" = tens of passes per image.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    needs_layer: ClassVar[bool] = True
    cost: ClassVar[str] = "fast"

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        """Heatmaps of float32 images `x` (N, H, W, 3) in 0-255 for `targets` (N,) int32, where
        -1 means "the predicted class"; returns (heatmaps, probs, explained classes)."""
        raise NotImplementedError


# ---- Grad-CAM: a hand-written tf.function ---------------------------------------------------


def _minmax_per_sample(cam: Any) -> Any:
    import tensorflow as tf

    # divide_no_nan rather than "+ epsilon": an untrained model's CAM can span 1e-6, and a fixed
    # epsilon would squash it towards 0 instead of stretching it to [0, 1]; flat maps become 0.
    lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(cam - lo, hi - lo)


def _gradcam_graph(grad_model: keras.Model, input_hw: tuple[int | None, int | None],
                   combine: Callable[[Any, Any], Any]) -> Any:
    """Compiled (x, targets) -> (cam, probs, explained class) over a model whose outputs are
    (feature map, logits, probs); `combine(fmap, grads)` makes the (N, h, w, 1) map. Traced
    before it is returned."""
    import tensorflow as tf

    h, w = input_hw
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
        cam = combine(fmap, grads)
        size = tf.shape(x)[1:3]
        cam = tf.image.resize(cam, size, method="bilinear")[..., 0]
        return _minmax_per_sample(cam), probs, chosen

    gradcam.get_concrete_function()  # trace once here (under the cache lock), not in racing threads
    return gradcam


class GradCam(Method):
    """Grad-CAM (Selvaraju et al., 2017): feature maps weighted by their mean gradient.

    A small hand-written `tf.function` over a (feature map, class scores) model, built once per
    layer: tf-keras-vis rebuilds an intermediate model and runs eagerly on every call, which costs
    several times a forward pass.
    """

    name = "gradcam"
    label = "Grad-CAM"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        """Each channel weighted by its mean gradient, summed, positive part."""
        import tensorflow as tf

        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(fmap * weights, axis=-1, keepdims=True))

    def graph(self, explainer: Explainer, layer: str) -> Any:
        """The compiled map of `layer` for this explainer's model (built on first use)."""
        return explainer.cached(
            (self.name, layer),
            lambda: _gradcam_graph(explainer.feature_model(layer), explainer.input_hw,
                                   self.combine),
        )

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        import tensorflow as tf

        assert layer is not None  # needs_layer: the Explainer always passes one
        cam, probs, chosen = self.graph(explainer, layer)(tf.constant(x), tf.constant(targets))
        return cam.numpy().astype(np.float32), probs.numpy(), chosen.numpy()


class HiResCam(GradCam):
    """HiResCAM (Draelos & Carin, 2020): the gradient multiplies the feature map element by
    element instead of being averaged per channel, so the map shows where the score was raised
    (Grad-CAM's averaging can credit locations that lowered it)."""

    name = "hirescam"
    label = "HiResCAM"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        import tensorflow as tf

        return tf.nn.relu(tf.reduce_sum(fmap * grads, axis=-1, keepdims=True))


class LayerCam(GradCam):
    """LayerCAM (Jiang et al., 2021): element-wise weights from the positive gradients only;
    reliable at earlier, finer layers too, where Grad-CAM's channel averages wash out."""

    name = "layercam"
    label = "LayerCAM"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        import tensorflow as tf

        return tf.nn.relu(tf.reduce_sum(fmap * tf.nn.relu(grads), axis=-1, keepdims=True))


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


class ScoreCam(_VisMethod):
    """Score-CAM (Wang et al., 2020), by tf-keras-vis, on the `explainer.scorecam_max_channels`
    most varied channels ("fast" Score-CAM): one forward pass per channel and image."""

    name = "scorecam"
    label = "Score-CAM (slower)"
    cost = "slow"

    def build(self, explainer: Explainer) -> Any:
        from tf_keras_vis.scorecam import Scorecam

        return Scorecam(explainer.scores_model(), clone=False)

    def run(self, vis: Any, explainer: Explainer, x: np.ndarray, onehot: Any,
            layer: str | None) -> Any:
        # One image per call: tf-keras-vis masks every image with the channels chosen for
        # any image of the batch, which is quadratic in the batch size.
        n_channels = int(explainer.model.get_layer(layer).output.shape[-1])
        cap = min(explainer.scorecam_max_channels, n_channels)
        cams = []
        for i in range(len(x)):
            cams.append(vis(_class_score(onehot[i : i + 1]), x[i : i + 1],
                            penultimate_layer=layer, seek_penultimate_conv_layer=False,
                            max_N=cap))
        return np.concatenate([np.reshape(c, (1, *x.shape[1:3])) for c in cams])


class _CompiledModel:
    """The little of a Keras model that tf-keras-vis' Saliency uses, backed by a tf.function.

    Gradients flow through a tf.function, so the tape in Saliency still gets d(score)/d(input).
    """

    def __init__(self, model: keras.Model, forward: Any) -> None:
        self.inputs = model.inputs
        self.outputs = model.outputs
        self._forward = forward

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        import tensorflow as tf

        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self._forward(tf.cast(x, tf.float32))[0]


class SmoothGrad(_VisMethod):
    """SmoothGrad (Smilkov et al., 2017): input gradients averaged over
    `explainer.smooth_samples` noisy copies, by tf-keras-vis' Saliency. Pixel saliency, no layer.
    """

    name = "smoothgrad"
    label = "SmoothGrad (pixel saliency)"
    needs_layer = False
    cost = "slow"

    def build(self, explainer: Explainer) -> Any:
        from tf_keras_vis.saliency import Saliency

        # Saliency only calls the model: give it the compiled forward so each of the noisy
        # samples is one graph call instead of an eager pass (measured 7.5 s vs 19.7 s for 20
        # samples on MobileNetV2 at 224 px, 2 busy cores).
        compiled = _CompiledModel(explainer.scores_model(), explainer.compiled_forward())
        return Saliency(compiled, clone=False)

    def run(self, vis: Any, explainer: Explainer, x: np.ndarray, onehot: Any,
            layer: str | None) -> Any:
        return vis(_class_score(onehot), x, smooth_samples=explainer.smooth_samples,
                   smooth_noise=explainer.smooth_noise)


# The registry: name -> method, in the order the CLI and the dashboard list them.
REGISTRY: dict[str, Method] = {
    m.name: m for m in (GradCam(), HiResCam(), LayerCam(), GradCamPlusPlus(), ScoreCam(),
                        SmoothGrad())
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

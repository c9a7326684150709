"""Gradient CAMs as hand-written `tf.function`s: Grad-CAM, HiResCAM, LayerCAM, Grad-CAM++ and
multi-layer fusion. Each is one compiled forward and backward pass per batch, built once per
(method, layer) and kept in `Explainer.cached`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.explain.base import Method, Result, minmax_per_sample

if TYPE_CHECKING:
    import keras

    from pipeline.explain.explainer import Explainer


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
        return minmax_per_sample(cam), probs, chosen

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
    summary = "fast and coarse: the layer's channels weighted by their mean gradient"

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
    summary = "keeps where the evidence is instead of averaging each channel's gradient"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        import tensorflow as tf

        return tf.nn.relu(tf.reduce_sum(fmap * grads, axis=-1, keepdims=True))


class LayerCam(GradCam):
    """LayerCAM (Jiang et al., 2021): element-wise weights from the positive gradients only;
    reliable at earlier, finer layers too, where Grad-CAM's channel averages wash out."""

    name = "layercam"
    label = "LayerCAM"
    summary = "weights each place by its own positive gradient: finer than Grad-CAM"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        import tensorflow as tf

        return tf.nn.relu(tf.reduce_sum(fmap * tf.nn.relu(grads), axis=-1, keepdims=True))


class GradCamPlusPlus(GradCam):
    """Grad-CAM++ (Chattopadhay et al., 2018): each channel's weight sums its positive
    gradients, weighted per location by alpha = g^2 / (2 g^2 + g^3 * sum(A)), so several
    separate instances of the evidence all count (Grad-CAM's mean favours the largest).

    tf-keras-vis' formula (it computed this method here before), compiled like our Grad-CAM:
    one forward and backward pass, where tf-keras-vis rebuilt a model and ran eagerly on every
    call. tf-keras-vis also multiplies the gradients by exp(score); that factor cancels in
    alpha and only rescales each map, which the min-max normalisation removes (and for a class
    scored far below the top one, exp() underflowed to an empty map).
    """

    name = "gradcam++"
    label = "Grad-CAM++"
    summary = "sharper where several regions count"

    @staticmethod
    def combine(fmap: Any, grads: Any) -> Any:
        import tensorflow as tf

        g2 = tf.square(grads)
        total = tf.reduce_sum(fmap, axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + g2 * grads * total
        denom += tf.cast(g2 == 0.0, denom.dtype)  # no gradient: alpha 0, not 0 / 0
        alphas = g2 / denom
        norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
        alphas /= norm + tf.cast(norm == 0.0, norm.dtype)
        weights = tf.reduce_sum(tf.nn.relu(grads) * alphas, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(fmap * weights, axis=-1, keepdims=True))


# Multi-layer fusion reads this many resolution stages (the chosen layer and the deepest layer of
# each of the next finer resolutions): 7/14/28 px maps on MobileNetV2, 16/32/64 on the custom CNN.
FUSION_STAGES = 3


def _fusion_graph(feature_model: keras.Model, n_maps: int,
                  input_hw: tuple[int | None, int | None],
                  combine: Callable[[Any, Any], Any]) -> Any:
    """Compiled (x, targets) -> (fused map, probs, explained class) over a model whose outputs
    are (n_maps feature maps, logits, probs): one forward and one backward pass for all layers;
    `combine(fmap, grads)` makes each layer's map."""
    import tensorflow as tf

    h, w = input_hw
    spec_x = tf.TensorSpec((None, h, w, 3), tf.float32)
    spec_t = tf.TensorSpec((None,), tf.int32)

    @tf.function(input_signature=[spec_x, spec_t])
    def fusion(x: Any, targets: Any) -> tuple[Any, Any, Any]:
        with tf.GradientTape() as tape:
            *fmaps, logits, probs = feature_model([x], training=False)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
            chosen = tf.where(targets < 0, predicted, targets)
            total = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        grads = tape.gradient(total, fmaps)
        size = tf.shape(x)[1:3]
        log_sum = tf.zeros(tf.shape(x)[:3])
        evidence = None  # per image: the deepest layer's map is not flat
        for fmap, grad in zip(fmaps, grads, strict=True):
            cam = tf.image.resize(combine(fmap, grad), size, method="bilinear")[..., 0]
            cam = minmax_per_sample(cam)
            # A finer layer whose map is flat (all zero after the ReLU) carries no "where": it
            # counts as all ones, so it cannot wipe out the other layers' product.
            flat = tf.reduce_max(cam, axis=(1, 2), keepdims=True) <= 0
            evidence = tf.logical_not(flat) if evidence is None else evidence
            cam = tf.where(flat, tf.ones_like(cam), cam)
            log_sum += tf.math.log(cam + 1e-6)
        fused = tf.exp(log_sum / float(n_maps))  # geometric mean of the normalised maps
        # The deepest layer (the first) says whether there is evidence for the class at all:
        # where it has none the fused map is empty too, as that layer's own map is. Counted as
        # ones, it left the finer, less class-specific layers to draw a full map of "no
        # evidence" (an explanation review: 2 of 25 misread test images' true class).
        fused = tf.where(evidence, fused, tf.zeros_like(fused))
        return minmax_per_sample(fused), probs, chosen

    fusion.get_concrete_function()
    return fusion


class GradCamFusion(Method):
    """Multi-layer fusion: Grad-CAMs of `FUSION_STAGES` resolution stages (the given layer and
    the deepest layer of each finer resolution below it, `layers.stage_layers`), each upsampled
    to the input and min-max normalised, combined by their geometric mean.

    Why the product (geometric mean) and not the average: the deep map knows *which* evidence
    counts but is coarse (7x7 on MobileNetV2); the finer maps are sharp but less class-specific
    and light up edges such as the skull. A product keeps only what every layer agrees on, so
    the fine maps sharpen the deep blob and cannot move the peak onto an edge the deep layer
    ignores; an average lets a bright skull edge of a fine layer win the peak.
    Measured (explain_choice.json of the two shipped runs, 48 validation images with a box
    each): the finer layers' Grad-CAMs are poor there (pointing game 0.02-0.25), so the product
    only matches plain Grad-CAM on MobileNetV2 (0.27 / 0.19 vs 0.25 / 0.25) and loses on the
    custom CNN (0.17 / 0.10 vs 0.19 / 0.25); LayerCAM holds up at finer layers (0.56-0.75), so
    fusing LayerCAMs (`LayerCamFusion`) does better.
    """

    name = "fusion"
    label = "Multi-layer Grad-CAM (fusion)"
    summary = "the last layer's Grad-CAM sharpened by finer layers' maps"
    combine = staticmethod(GradCam.combine)  # each layer's map

    def graph(self, explainer: Explainer, layer: str) -> tuple[Any, list[str]]:
        """(compiled fused map, the layers it reads) for `layer` (built on first use)."""
        from pipeline.explain.layers import stage_layers

        def build() -> tuple[Any, list[str]]:
            import keras

            names = stage_layers(explainer.model, layer, FUSION_STAGES)
            base = explainer.feature_model(layer)  # (fmap, logits, probs): reuse its outputs
            feats = [explainer.model.get_layer(n).output for n in names]
            model = keras.Model(base.inputs, [*feats, *base.outputs[1:]], name="fusion")
            return _fusion_graph(model, len(names), explainer.input_hw, self.combine), names

        return explainer.cached((self.name, layer), build)

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        import tensorflow as tf

        assert layer is not None
        fn, _ = self.graph(explainer, layer)
        cam, probs, chosen = fn(tf.constant(x), tf.constant(targets))
        return cam.numpy().astype(np.float32), probs.numpy(), chosen.numpy()


class LayerCamFusion(GradCamFusion):
    """Multi-layer LayerCAM: `GradCamFusion` with LayerCAM's element-wise positive-gradient
    maps, which stay on the object at the finer layers where Grad-CAM's channel averages wash
    out (LayerCAM's own paper fuses its layers too, Jiang et al., 2021)."""

    name = "layercam-fusion"
    label = "Multi-layer LayerCAM (fusion)"
    summary = "the last layer's LayerCAM sharpened by finer layers' maps"
    combine = staticmethod(LayerCam.combine)


# Images per compiled Score-CAM call are capped so images x channels stays near this many
# masked copies: forward passes only, but 64 copies at 224 px already fill 2 cores.
SCORECAM_COPIES_PER_CALL = 64


def _scorecam_graph(feature_model: keras.Model, input_hw: tuple[int | None, int | None],
                    k: int) -> Any:
    """Compiled (x, targets) -> (Score-CAM, probs, explained class): the feature map's `k`
    channels of highest spatial std, each upsampled and min-max normalised, mask the input; a
    channel's weight is the explained class's softmax probability on its masked input."""
    import tensorflow as tf

    h, w = input_hw
    spec_x = tf.TensorSpec((None, h, w, 3), tf.float32)
    spec_t = tf.TensorSpec((None,), tf.int32)

    # autograph off: no Python control flow here, and AutoGraph warned about the closure
    @tf.function(input_signature=[spec_x, spec_t], autograph=False)
    def scorecam(x: Any, targets: Any) -> tuple[Any, Any, Any]:
        fmap, logits, probs = feature_model([x], training=False)
        chosen = tf.where(targets < 0, tf.argmax(logits, axis=-1, output_type=tf.int32),
                          targets)
        _, idx = tf.math.top_k(tf.math.reduce_std(fmap, axis=(1, 2)), k)  # (N, k)
        sel = tf.gather(fmap, idx, axis=-1, batch_dims=1)  # (N, h, w, k)
        size = tf.shape(x)[1:3]
        up = tf.image.resize(sel, size, method="bilinear")
        lo = tf.reduce_min(up, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(up, axis=(1, 2), keepdims=True)
        masks = tf.transpose((up - lo) / (hi - lo + 1e-7), [0, 3, 1, 2])[..., None]
        masked = tf.reshape(x[:, None] * masks, tf.concat([[-1], tf.shape(x)[1:]], axis=0))
        _, masked_logits, _ = feature_model([masked], training=False)
        p = tf.reshape(tf.nn.softmax(masked_logits), (tf.shape(x)[0], k, -1))
        weights = tf.gather(p, chosen, axis=2, batch_dims=1)  # (N, k)
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", sel, weights))
        cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
        return minmax_per_sample(cam), probs, chosen

    scorecam.get_concrete_function()
    return scorecam


class ScoreCam(Method):
    """Score-CAM (Wang et al., 2020) on the `explainer.scorecam_max_channels` channels of
    highest spatial std ("fast" Score-CAM, tf-keras-vis' `max_N` definition), compiled: all
    masked copies of a few images in one forward pass instead of tf-keras-vis' per-image
    Python loop (about 5x faster on MobileNetV2)."""

    name = "scorecam"
    label = "Score-CAM"
    summary = "no gradients: how much each channel's map alone raises the class score"
    cost = "slow"

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        import tensorflow as tf

        assert layer is not None
        n_channels = int(explainer.model.get_layer(layer).output.shape[-1])
        k = min(explainer.scorecam_max_channels, n_channels)
        graph = explainer.cached((self.name, layer, k), lambda: _scorecam_graph(
            explainer.feature_model(layer), explainer.input_hw, k))
        step = max(1, SCORECAM_COPIES_PER_CALL // k)
        parts = [graph(tf.constant(x[i : i + step]), tf.constant(targets[i : i + step]))
                 for i in range(0, len(x), step)]
        return (np.concatenate([p[0].numpy() for p in parts]).astype(np.float32),
                np.concatenate([p[1].numpy() for p in parts]),
                np.concatenate([p[2].numpy() for p in parts]))

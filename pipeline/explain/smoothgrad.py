"""SmoothGrad (Smilkov et al., 2017) as one compiled graph: all noisy copies of a few images in
one batched forward and backward pass.

The definition is tf-keras-vis' `Saliency(smooth_samples, smooth_noise)`, which this replaced
(about 5 s per upload there: one eager pass per sample): each image gets `samples` copies with
Gaussian noise of std `noise` x (the image's max - min); the map is the mean over copies of the
absolute input gradient of the class score (pre-softmax), its maximum over the colour channels,
min-max normalised per image. The noise is fixed (seeded), so an image always gets the same map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.explain.base import Method, Result, minmax_per_sample

if TYPE_CHECKING:
    from pipeline.explain.explainer import Explainer

# Images x samples per compiled call: 32 copies at 224 px hold the backward pass of MobileNetV2
# in well under 1 GB; larger batches gain nothing on 2 cores.
MAX_COPIES_PER_CALL = 32
NOISE_SEED = 0


def smoothgrad_noise(samples: int, hw: tuple[int, int], seed: int = NOISE_SEED) -> np.ndarray:
    """The standard-normal noise (samples, H, W, 3) every image gets (scaled per image)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, *hw, 3), dtype=np.float32)


def _smoothgrad_graph(scores_model: Any, input_hw: tuple[int | None, int | None]) -> Any:
    """Compiled (x (N, H, W, 3), targets (N,) resolved, noise (S, H, W, 3), level) -> (N, H, W)
    maps in [0, 1]."""
    import tensorflow as tf

    h, w = input_hw
    spec_x = tf.TensorSpec((None, h, w, 3), tf.float32)
    spec_t = tf.TensorSpec((None,), tf.int32)
    spec_n = tf.TensorSpec((None, h, w, 3), tf.float32)
    spec_l = tf.TensorSpec((), tf.float32)

    @tf.function(input_signature=[spec_x, spec_t, spec_n, spec_l])
    def smoothgrad(x: Any, targets: Any, noise: Any, level: Any) -> Any:
        n, s = tf.shape(x)[0], tf.shape(noise)[0]
        span = (tf.reduce_max(x, axis=(1, 2, 3), keepdims=True)
                - tf.reduce_min(x, axis=(1, 2, 3), keepdims=True))
        noisy = x[None] + noise[:, None] * (level * span)[None]  # (S, N, H, W, 3)
        flat = tf.reshape(noisy, tf.concat([[s * n], tf.shape(x)[1:]], axis=0))
        flat_targets = tf.tile(targets, [s])  # sample-major, like the reshape
        with tf.GradientTape() as tape:
            tape.watch(flat)
            logits = scores_model([flat], training=False)
            # Copies are independent at inference: the sum's gradient is per copy.
            total = tf.reduce_sum(tf.gather(logits, flat_targets, axis=1, batch_dims=1))
        grads = tf.abs(tape.gradient(total, flat))
        grads = tf.reshape(grads, tf.shape(noisy))
        sal = tf.reduce_max(tf.reduce_mean(grads, axis=0), axis=-1)  # (N, H, W)
        return minmax_per_sample(sal)

    smoothgrad.get_concrete_function()
    return smoothgrad


class SmoothGrad(Method):
    """SmoothGrad: input gradients averaged over `explainer.smooth_samples` noisy copies (noise
    std `explainer.smooth_noise` x each image's value range). Pixel saliency, no layer."""

    name = "smoothgrad"
    label = "SmoothGrad (pixel saliency)"
    summary = "pixel-level sensitivity, averaged over noisy copies"
    needs_layer = False
    cost = "slow"

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        import tensorflow as tf

        logits, probs = explainer.scores_and_probs(x)
        chosen = np.where(targets < 0, logits.argmax(axis=1), targets).astype(np.int32)
        graph = explainer.cached(self.name, lambda: _smoothgrad_graph(explainer.scores_model(),
                                                                      explainer.input_hw))
        samples = int(explainer.smooth_samples)
        if samples < 1:
            raise ValueError(f"smooth_samples must be >= 1, got {samples}")
        noise = explainer.cached((self.name, "noise", samples, x.shape[1:3]),
                                 lambda: tf.constant(smoothgrad_noise(samples, x.shape[1:3])))
        level = tf.constant(float(explainer.smooth_noise), tf.float32)
        step = max(1, MAX_COPIES_PER_CALL // samples)
        maps = [graph(tf.constant(x[i : i + step]), tf.constant(chosen[i : i + step]), noise,
                      level).numpy() for i in range(0, len(x), step)]
        return np.concatenate(maps).astype(np.float32), probs, chosen

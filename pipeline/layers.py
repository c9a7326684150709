"""Our own Keras layers, registered so saved `.keras` models load with safe_mode=True.

`HeadStandardization` exists for robustness: in the Sartaj data the tumour and no-tumour images
come mostly from different sources, and brightness, contrast and background level are cues a
model can learn instead of the tumour. Standardising each image over its own head region (and
setting the background to one constant) takes those cues away inside the model, so every
consumer of a saved model (CLI, dashboard, explainer) gets it without extra code.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

PACKAGE = "brain_mri_xai"


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadStandardization(keras.layers.Layer):
    """Per image: (x - mean) / std over head pixels, then `scale`, clipped to `clip`.

    Head pixels are those whose channel mean exceeds `threshold` (raw 0-255 input: the MRI
    background is near black); background pixels become `background`. Statistics are per image,
    so the layer behaves the same in training and inference and has no weights.
    """

    def __init__(self, threshold: float = 10.0, scale: float = 1.0,
                 clip: float | None = None, background: float = -2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold, self.scale, self.clip, self.background = threshold, scale, clip, background

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        mask = ops.cast(ops.mean(x, axis=-1, keepdims=True) > self.threshold, "float32")
        mask3 = ops.broadcast_to(mask, ops.shape(x))
        n = ops.maximum(ops.sum(mask3, axis=(1, 2, 3), keepdims=True), 1.0)
        mean = ops.sum(x * mask3, axis=(1, 2, 3), keepdims=True) / n
        var = ops.sum(ops.square(x - mean) * mask3, axis=(1, 2, 3), keepdims=True) / n
        z = (x - mean) / ops.sqrt(var + 1e-3) * self.scale
        if self.clip is not None:
            z = ops.clip(z, -self.clip, self.clip)
        return z * mask3 + self.background * (1.0 - mask3)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold, "scale": self.scale,
                "clip": self.clip, "background": self.background}


@keras.saving.register_keras_serializable(package=PACKAGE)
class HeadEqualization(keras.layers.Layer):
    """Per image: grey level -> its rank among the head's pixels (histogram equalisation over
    the head), scaled to [`low`, `high`]; background pixels become `low`.

    Why, beyond `HeadStandardization`: in the Sartaj data the tumour images are dark,
    low-contrast T1 exports and the no-tumour images bright, high-contrast ones, and other
    sources' tumour images look like the latter. Standardising removes gain and offset only;
    equalising removes every monotonic intensity curve (gamma, window, contrast), so that cue
    is gone for any scanner. The mapping is the head's cumulative histogram of the channel
    mean (256 bins), interpolated within a bin, so gradients with respect to the input exist
    (the local histogram density) and input-gradient explanations keep working.
    """

    BINS = 256

    def __init__(self, threshold: float = 10.0, low: float = 0.0, high: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold, self.low, self.high = threshold, low, high

    def call(self, x: Any) -> Any:
        import tensorflow as tf

        x = tf.cast(x, tf.float32)
        grey = tf.clip_by_value(tf.reduce_mean(x, axis=-1), 0.0, self.BINS - 1e-3)
        n, h, w = tf.shape(grey)[0], tf.shape(grey)[1], tf.shape(grey)[2]
        flat = tf.reshape(grey, (n, h * w))
        head = tf.cast(flat > self.threshold, tf.float32)
        binned = tf.stop_gradient(tf.cast(tf.floor(flat), tf.int32))
        ids = binned + self.BINS * tf.range(n)[:, None]
        hist = tf.reshape(tf.math.unsorted_segment_sum(head, ids, n * self.BINS),
                          (n, self.BINS))
        hist = tf.stop_gradient(hist / tf.maximum(tf.reduce_sum(hist, 1, keepdims=True), 1.0))
        below = tf.cumsum(hist, axis=1, exclusive=True)  # share of head pixels in lower bins
        frac = flat - tf.stop_gradient(tf.floor(flat))
        rank = (tf.gather(below, binned, batch_dims=1)
                + frac * tf.gather(hist, binned, batch_dims=1))
        out = self.low + (self.high - self.low) * rank * head
        return tf.repeat(tf.reshape(out, (n, h, w, 1)), tf.shape(x)[-1], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold, "low": self.low,
                "high": self.high}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomGamma(keras.layers.Layer):
    """Training only: per image, 255·(x/255)^g with log g uniform in ±log(`max_gamma`).

    Different scanners, sequences and export windows change the intensity curve; the robustness
    benchmark showed a gamma change costing the custom CNN 21 points (issue #16).
    """

    def __init__(self, max_gamma: float = 1.8, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_gamma, self.seed = max_gamma, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        span = math.log(self.max_gamma)
        g = ops.exp(keras.random.uniform((ops.shape(x)[0], 1, 1, 1), -span, span,
                                         seed=self.generator))
        return 255.0 * ops.power(ops.clip(x, 0.0, 255.0) / 255.0 + 1e-6, g)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_gamma": self.max_gamma, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomBiasField(keras.layers.Layer):
    """Training only: per image, x·exp(a·f) with f a smooth random surface in [-1, 1] (a 4×4
    grid upsampled bicubically) and a uniform in [0, `max_log_amplitude`]: coil inhomogeneity."""

    def __init__(self, max_log_amplitude: float = 0.3, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_log_amplitude, self.seed = max_log_amplitude, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        n = ops.shape(x)[0]
        grid = keras.random.normal((n, 4, 4, 1), seed=self.generator)
        field = ops.image.resize(grid, ops.shape(x)[1:3], interpolation="bicubic")
        field = field / (ops.max(ops.abs(field), axis=(1, 2, 3), keepdims=True) + 1e-6)
        amp = keras.random.uniform((n, 1, 1, 1), 0.0, self.max_log_amplitude,
                                   seed=self.generator)
        return ops.clip(x * ops.exp(amp * field), 0.0, 255.0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "max_log_amplitude": self.max_log_amplitude,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomIntensityRemap(keras.layers.Layer):
    """Training only: with probability `rate` per image, map intensities through a random
    piecewise-linear curve (`segments` equal pieces, black stays black, knots uniform in
    [`floor`, 1]); the curve may fall as well as rise.

    Why: in the Sartaj data nearly every tumour image is a T1 contrast scan and most no-tumour
    images are T2, so "which sequence" predicts the label. A curve that can reorder grey levels
    turns one sequence's contrast into another's (the idea behind contrast-agnostic training such
    as SynthSeg, Billot et al. 2023, and MONAI's RandHistogramShift, which keeps the order).
    """

    def __init__(self, rate: float = 0.5, segments: int = 4, floor: float = 0.1,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.segments, self.floor, self.seed = rate, segments, floor, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        n, k = ops.shape(x)[0], self.segments
        v = ops.clip(x, 0.0, 255.0) / 255.0
        knots = keras.random.uniform((n, k), self.floor, 1.0, seed=self.generator)
        knots = ops.concatenate([ops.zeros((n, 1)), knots], axis=1)  # f(0) = 0: background
        curve = ops.zeros_like(v)
        for i in range(k):  # f(v) = sum of each piece's slope times the part of v it covers
            slope = ops.reshape((knots[:, i + 1] - knots[:, i]) * k, (-1, 1, 1, 1))
            curve = curve + slope * ops.clip(v - i / k, 0.0, 1.0 / k)
        use = keras.random.uniform((n, 1, 1, 1), seed=self.generator) < self.rate
        return ops.where(use, 255.0 * curve, ops.clip(x, 0.0, 255.0))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "segments": self.segments,
                "floor": self.floor, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomHistogramMatch(keras.layers.Layer):
    """Training only: with probability `rate` per image, map the head's grey levels onto the
    head histogram of a random image of the same batch (quantile matching at `quantiles`
    levels, linear in between); the background (channel mean at most `threshold`) is kept.

    Why: in the Sartaj data the training gliomas are dark, low-contrast exports (head median
    66, 99th percentile 175 on 0-255) and the no-tumour images bright ones (91, 220), while
    other sources' gliomas look like the latter (`Testing/`: 88, 220). Random gamma moves every
    class alike, so the class gap survives it; taking a random partner's histogram makes an
    image's intensity distribution independent of its own class. Randomised histogram matching
    as augmentation: Yaras et al., 2021 (overhead imagery, towards unlabelled target images).
    """

    def __init__(self, rate: float = 0.5, quantiles: int = 64, threshold: float = 10.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.quantiles, self.threshold, self.seed = rate, quantiles, threshold, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        import tensorflow as tf

        x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 255.0)
        grey = tf.reduce_mean(x, axis=-1)
        n, h, w = tf.shape(grey)[0], tf.shape(grey)[1], tf.shape(grey)[2]
        flat = tf.reshape(grey, (n, h * w))
        head = flat > self.threshold
        count = tf.reduce_sum(tf.cast(head, tf.int32), axis=1)
        # Head quantiles: sort with the background pushed past the end, index by head count.
        ranked = tf.sort(tf.where(head, flat, 1e9), axis=1)
        levels = tf.linspace(0.0, 1.0, self.quantiles)
        idx = tf.cast(tf.round(levels[None, :] * tf.cast(tf.maximum(count - 1, 0), tf.float32)
                               [:, None]), tf.int32)
        own = tf.gather(ranked, idx, batch_dims=1)  # (n, quantiles), non-decreasing
        partner = keras.random.shuffle(tf.range(n), seed=self.generator)
        target = tf.gather(own, partner)
        lo = tf.clip_by_value(tf.searchsorted(own, flat, side="right") - 1, 0,
                              self.quantiles - 2)
        o_lo, o_hi = tf.gather(own, lo, batch_dims=1), tf.gather(own, lo + 1, batch_dims=1)
        t_lo, t_hi = tf.gather(target, lo, batch_dims=1), tf.gather(target, lo + 1, batch_dims=1)
        frac = tf.clip_by_value((flat - o_lo) / tf.maximum(o_hi - o_lo, 1e-6), 0.0, 1.0)
        mapped = t_lo + frac * (t_hi - t_lo)
        # Too few head pixels on either side of a pair: no histogram to take or give.
        enough = (count >= self.quantiles) & (tf.gather(count, partner) >= self.quantiles)
        use = (keras.random.uniform((n,), seed=self.generator) < self.rate) & enough
        delta = tf.where(use[:, None] & head, mapped - flat, 0.0)
        return tf.clip_by_value(x + tf.reshape(delta, (n, h, w, 1)), 0.0, 255.0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "quantiles": self.quantiles,
                "threshold": self.threshold, "seed": self.seed}


def gaussian_blur(x: Any, sigma: float, radius: int) -> Any:
    """Each channel of a (N, H, W, C) batch blurred by a Gaussian of `sigma` px on a
    (2·radius + 1)² kernel, the border reflect-padded (so the edge does not read as black)."""
    r = ops.arange(-radius, radius + 1, dtype="float32")
    g = ops.exp(-(r ** 2) / (2.0 * sigma ** 2))
    k2 = ops.outer(g, g)
    k2 = k2 / ops.sum(k2)
    side = 2 * radius + 1
    kernel = ops.tile(ops.reshape(k2, (side, side, 1, 1)), (1, 1, x.shape[-1], 1))
    pad = ((0, 0), (radius, radius), (radius, radius), (0, 0))
    return ops.depthwise_conv(ops.pad(x, pad, mode="reflect"), kernel, padding="valid")


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomSharpen(keras.layers.Layer):
    """Training only: with probability `rate` per image, an unsharp mask x + a·(x − blur(x)),
    a uniform in [0, `max_amount`], blur a Gaussian of `sigma` px (5 × 5 kernel).

    Why: the training tumours are soft figshare exports, while other sources' tumour images,
    like the training no-tumour images, are crisp (`Testing/` gliomas the custom CNN calls "no
    tumour": model card, Known failure modes). Blur augmentation only softens; sharpening
    makes some soft tumour images crisp, so crispness stops telling the class.
    """

    def __init__(self, rate: float = 0.5, max_amount: float = 2.0, sigma: float = 1.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.max_amount, self.sigma, self.seed = rate, max_amount, sigma, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        x = ops.clip(ops.cast(x, "float32"), 0.0, 255.0)
        n = ops.shape(x)[0]
        # reflect-padded so the image edge is not read as a black edge to sharpen
        soft = gaussian_blur(x, self.sigma, radius=2)
        amount = keras.random.uniform((n, 1, 1, 1), 0.0, self.max_amount, seed=self.generator)
        use = keras.random.uniform((n, 1, 1, 1), seed=self.generator) < self.rate
        sharp = ops.clip(x + amount * (x - soft), 0.0, 255.0)
        return ops.where(use, sharp, x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "max_amount": self.max_amount,
                "sigma": self.sigma, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InputBlur(keras.layers.Layer):
    """Always (training and inference): a fixed Gaussian blur of `sigma` px at the model's input
    size, on a kernel reaching 2·sigma.

    Why: a model that reads fine texture (sharpness, grain, JPEG blocks) learns the source's
    export and breaks when another scanner's images are softer or noisier (histogram-matched
    MobileNetV2 lost 7.6 points under blur). A fixed low-pass in the model takes that band away
    in training and use alike, instead of hoping augmentation covers every softness.
    Measured (2026-12-04): with histogram matching, sigma 1 px cost MobileNetV2 11.6 points on
    `Testing/` (0.678 against 0.794), so no shipped recipe uses it.
    """

    def __init__(self, sigma: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = sigma
        self.radius = max(1, math.ceil(2.0 * sigma))

    def call(self, x: Any) -> Any:
        return gaussian_blur(ops.cast(x, "float32"), self.sigma, self.radius)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "sigma": self.sigma}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MixStyle(keras.layers.Layer):
    """Training only: with probability `rate` per batch, each feature map's per-channel mean and
    standard deviation (its "style") are mixed with those of a random partner in the batch at
    a Beta(`alpha`, `alpha`) weight; the normalised content stays (MixStyle, Zhou et al., ICLR
    2021). Identity in use, so a saved model answers as without it.

    Why: in mid-level features, channel statistics carry an image's export and scanner style
    (brightness, contrast, sharpness) more than its content. Mixing them between images makes
    new styles from the training set's own, for one-source training, at the cost of one
    elementwise pass; for transfer models it reaches the cached activations, where pixel
    augmentation cannot.
    """

    def __init__(self, rate: float = 0.5, alpha: float = 0.1, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.alpha, self.seed = rate, alpha, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training or self.rate <= 0:
            return x
        x = ops.cast(x, "float32")
        n = ops.shape(x)[0]
        # statistics held fixed, as in the paper: the gradient flows through the content only
        mu = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
        sig = ops.stop_gradient(ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + 1e-6))
        lam = keras.random.beta((n, 1, 1, 1), self.alpha, self.alpha, seed=self.generator)
        perm = keras.random.shuffle(ops.arange(n), seed=self.generator)
        mu_mix = lam * mu + (1.0 - lam) * ops.take(mu, perm, axis=0)
        sig_mix = lam * sig + (1.0 - lam) * ops.take(sig, perm, axis=0)
        mixed = (x - mu) / sig * sig_mix + mu_mix
        use = keras.random.uniform((), seed=self.generator) < self.rate
        return ops.where(use, mixed, x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "alpha": self.alpha,
                "seed": self.seed}

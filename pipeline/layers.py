"""Our own Keras layers, registered so saved `.keras` models load with safe_mode=True.

`HeadStandardization` exists for robustness: in the Sartaj data the tumour and no-tumour images
come mostly from different sources, and brightness, contrast and background level are cues a
model can learn instead of the tumour. Standardising each image over its own head region (and
setting the background to one constant) takes those cues away inside the model, so every
consumer of a saved model (CLI, dashboard, explainer) gets it without extra code.
"""

from __future__ import annotations

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

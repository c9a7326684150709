"""The keras.applications backbones the transfer-learning path can build (registry).

Each entry: the constructor, its input preprocessing as a serialisable layer, the layer
Grad-CAM reads by default, and the file name Keras caches its ImageNet no-top weights under
(`weights.resolve_weights` looks there before anything else).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class Backbone:
    """A keras.applications backbone usable through the transfer-learning code path."""

    constructor: Callable[..., keras.Model]
    preprocess: Callable[[keras.KerasTensor], keras.KerasTensor]
    gradcam_layer: str
    cache_file: str | None  # the file name Keras caches ImageNet no-top weights under


def _scale_minus1_1(x: keras.KerasTensor) -> keras.KerasTensor:
    # Equivalent to mobilenet_v2.preprocess_input, as a serialisable layer (no Lambda).
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)


def _identity(x: keras.KerasTensor) -> keras.KerasTensor:
    # EfficientNet carries its own rescaling and normalisation layers.
    return x


BACKBONES: dict[str, Backbone] = {
    "mobilenetv2": Backbone(
        keras.applications.MobileNetV2, _scale_minus1_1, "out_relu",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "efficientnetb0": Backbone(
        keras.applications.EfficientNetB0, _identity, "top_activation",
        "efficientnetb0_notop.h5",
    ),
}

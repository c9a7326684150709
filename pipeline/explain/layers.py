"""Which layers a Grad-CAM can read, and the model's class scores before the softmax.

Pure Keras graph inspection: nothing here runs the model.
"""

from __future__ import annotations

from typing import Any

import keras

_CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
)


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
    """The layer that produced the model's (single) output."""
    history = getattr(model.outputs[0], "_keras_history", None)
    if history is not None:
        return history[0]
    return model.layers[-1]


def logits_tensor(model: keras.Model) -> Any:
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


def _side(model: keras.Model, name: str) -> int | None:
    """Height of the layer's (N, H, W, C) output, None when unknown."""
    out = _layer_output(model.get_layer(name))
    return None if out is None else out.shape[1]


def stage_layers(model: keras.Model, layer: str, n: int = 3) -> list[str]:
    """`layer`, then the deepest layer of each of the next `n - 1` finer resolutions below it:
    one map per resolution stage, coarse to fine (multi-layer fusion's and the layer choice's
    candidates). Padding layers are skipped: their maps carry a zero border, not evidence.
    Fewer than `n` names when the model has fewer stages below `layer`."""
    names = conv_layers(model)
    if layer not in names:
        raise ValueError(f"layer {layer!r} not found among the 4-D layers of {model.name!r}")
    out, side = [layer], _side(model, layer) or 0
    for name in names[names.index(layer) + 1 :]:
        if len(out) == n:
            break
        if isinstance(model.get_layer(name), keras.layers.ZeroPadding2D):
            continue
        s = _side(model, name)
        if s is not None and s > side:
            out.append(name)
            side = s
    return out

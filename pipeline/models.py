"""Model registry: builders that return flat functional Keras models taking raw 0-255 RGB pixels.

Every model carries its own preprocessing (and augmentation, active only in training) as layers,
so a saved `.keras` file needs nothing from outside but `geometry.prepare_image`
(augmentation: augment.py; backbones: backbones.py; pretrained weights: weights.py). Transfer models
are built *flat* (the head is attached to the backbone's output tensor, not to the backbone as one
nested layer) because Grad-CAM tools cannot reach layers inside nested models
(tf-keras-vis issues #63 and #71).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from pipeline.augment import augmentation_block
from pipeline.backbones import BACKBONES
from pipeline.config import ModelConfig
from pipeline.layers import HeadEqualization, HeadStandardization, InputBlur, MixStyle
from pipeline.names import MODEL_NAMES, display_name
from pipeline.weights import WeightsChoice, WeightsError, resolve_weights

GRADCAM_LAYER_CUSTOM = "gradcam_target"
MIXSTYLE_BLOCKS = 2  # the custom CNN's blocks followed by MixStyle (cfg.mixstyle): the paper's
# choice, the early stages, where features hold style more than content


@dataclass
class BuiltModel:
    """A built model plus the facts training and explanation need about it."""

    model: keras.Model
    name: str
    gradcam_layer: str
    weights: WeightsChoice
    transfer: bool
    base_output: str | None = None  # name of the backbone's last layer (transfer models)
    head_input: str | None = None  # name of the first head layer after the backbone


def _preprocess(x: keras.KerasTensor, cfg: ModelConfig, transfer: bool,
                backbone_preprocess: Callable[[keras.KerasTensor], keras.KerasTensor] | None
                ) -> keras.KerasTensor:
    """Scaling for the network: the fixed input blur, then per-image head equalisation or
    standardisation if the config asks for them."""
    if cfg.input_blur > 0:
        x = InputBlur(cfg.input_blur, name="input_blur")(x)
    if cfg.equalize:
        # [0, 1] like the plain rescaling; ImageNet backbones expect [-1, 1]
        params = dict(low=-1.0, high=1.0) if transfer else {}
        return HeadEqualization(name="preprocess", **params)(x)
    if cfg.standardize:
        # ImageNet backbones expect roughly [-1, 1]: half a standard deviation per unit.
        params = dict(scale=0.5, clip=1.0, background=-1.0) if transfer else {}
        return HeadStandardization(name="preprocess", **params)(x)
    if transfer:
        return backbone_preprocess(x)
    return keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(x)


def compiled(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """Inference through one traced graph (any batch size): on a CPU about twice as fast as
    eager calls for training's feature caching, and 196 -> ~20 ms for one MobileNetV2 image."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    # traced now and called as its one graph: a trace inside a call counts towards
    # TensorFlow's retracing warning, per Python function, so one `compiled` per model (several
    # models, several runs in a process) warned as if one graph were traced again and again
    traced = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    fn = traced.get_concrete_function()

    def forward(x: np.ndarray) -> np.ndarray:
        return fn(tf.convert_to_tensor(x, tf.float32)).numpy()

    forward.traced = traced  # type: ignore[attr-defined]  # (and the model) alive with it
    return forward


def _shortcut(block_in: keras.KerasTensor, x: keras.KerasTensor, width: int, name: str
              ) -> keras.KerasTensor:
    """`x` plus the block's input projected to `width` channels (1x1 conv + BN), before the
    block's last ReLU (He et al., 2016): the two-conv blocks learn a residual."""
    skip = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_skip")(block_in)
    skip = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_skip_bn")(skip)
    return keras.layers.Add(name=f"{name}_add")([x, skip])


def _ibn_conv(x: keras.KerasTensor, width: int, conv: str, norm: str) -> keras.KerasTensor:
    """A 3x3 conv whose first half of channels is normalised per image (instance norm) and the
    rest per batch (IBN-Net's IBN-a, Pan et al., 2018). A conv's output channels are
    independent, so two convs of half the width each, concatenated, are one conv split in two,
    with plain Keras layers only (no Lambda: saved models load with safe_mode)."""
    half = width // 2
    a = keras.layers.Conv2D(half, 3, padding="same", use_bias=False, name=f"{conv}_in")(x)
    a = keras.layers.GroupNormalization(groups=-1, name=f"{norm}_in")(a)  # groups=-1: instance
    b = keras.layers.Conv2D(width - half, 3, padding="same", use_bias=False,
                            name=f"{conv}_bn")(x)
    b = keras.layers.BatchNormalization(momentum=0.9, name=norm)(b)
    return keras.layers.Concatenate(name=f"{conv}_ibn")([a, b])


def build_custom_cnn(num_classes: int, cfg: ModelConfig, seed: int = 42,
                     augment: bool = True) -> BuiltModel:
    """Our own CNN: conv blocks (conv-BN-ReLU, max-pool), widening by 2 per block, pooled head.

    The first blocks use one conv each to stay cheap at high resolution on a CPU; the last two
    use two convs, where the feature maps are small and most of the learning happens. With
    `cfg.residual` those two add a projected shortcut from their input (`_shortcut`); the first
    `cfg.ibn_blocks` blocks normalise half their channels per image (`_ibn_conv`).
    """
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = augmentation_block(inputs, seed, cfg.augment_strength) if augment else inputs
    x = _preprocess(x, cfg, transfer=False, backbone_preprocess=None)
    for block in range(cfg.depth):
        width = cfg.width * 2 ** block  # e.g. 16-32-64-128 filters at the full profile's width 16
        convs = 2 if block >= cfg.depth - 2 else 1
        block_in = x
        for c in range(convs):
            name = f"block{block + 1}"
            if block < cfg.ibn_blocks:
                x = _ibn_conv(x, width, f"{name}_conv{c + 1}", f"{name}_bn{c + 1}")
            else:
                x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                        name=f"{name}_conv{c + 1}")(x)
                # momentum 0.9 (Keras: 0.99): small datasets give few steps per epoch, and slow
                # running statistics make validation look broken for many epochs.
                x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{c + 1}")(x)
            last = block == cfg.depth - 1 and c == convs - 1
            if cfg.residual and convs == 2 and c == 1:
                x = _shortcut(block_in, x, width, f"block{block + 1}")
            x = keras.layers.Activation(
                "relu", name=GRADCAM_LAYER_CUSTOM if last else f"block{block + 1}_relu{c + 1}")(x)
        if block < cfg.depth - 1:
            x = keras.layers.MaxPooling2D(name=f"block{block + 1}_pool")(x)
            if cfg.mixstyle > 0 and block < MIXSTYLE_BLOCKS:  # identity in use
                x = MixStyle(cfg.mixstyle, seed=seed + block, name=f"block{block + 1}_mixstyle")(x)
            rate = min(0.1 * block, 0.2)  # light dropout that grows with depth
            x = keras.layers.SpatialDropout2D(rate, name=f"block{block + 1}_drop")(x)
    # Average and max pooling side by side: the average alone dilutes a small lesion over the
    # whole map (on the phantoms it learned far slower); the max keeps its strongest response.
    avg = keras.layers.GlobalAveragePooling2D(name="head_avg_pool")(x)
    peak = keras.layers.GlobalMaxPooling2D(name="head_max_pool")(x)
    x = keras.layers.Concatenate(name="head_pool")([avg, peak])
    x = keras.layers.Dropout(cfg.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="custom_cnn")
    return BuiltModel(model, "custom_cnn", GRADCAM_LAYER_CUSTOM, WeightsChoice(None, "none"),
                      transfer=False)


def build_transfer(name: str, num_classes: int, cfg: ModelConfig, weights: WeightsChoice,
                   seed: int = 42, augment: bool = True) -> BuiltModel:
    """A keras.applications backbone, flat, with a GAP -> dropout -> softmax head."""
    backbone = BACKBONES[name]
    size = cfg.image_size
    inputs = keras.Input((size, size, 3), name="image")
    x = augmentation_block(inputs, seed, cfg.augment_strength) if augment else inputs
    x = _preprocess(x, cfg, transfer=True, backbone_preprocess=backbone.preprocess)
    try:
        base = backbone.constructor(include_top=False, weights=weights.keras_arg,
                                    input_tensor=x, input_shape=(size, size, 3))
    except Exception as exc:  # Keras raises bare Exception for fetch failures
        raise WeightsError(f"could not load {weights.label} weights into {display_name(name)}: "
                           f"{exc}") from exc
    for layer in base.layers:
        layer.trainable = False  # phase 1 trains the head only
    h = keras.layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    h = keras.layers.Dropout(cfg.dropout, name="head_dropout")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs, outputs, name=name)
    return BuiltModel(model, name, backbone.gradcam_layer, weights, transfer=True,
                      base_output=base.layers[-1].name, head_input="head_pool")


def build_model(name: str, num_classes: int, cfg: ModelConfig, weights: str = "auto",
                seed: int = 42, augment: bool = True) -> BuiltModel:
    """Build a registered model by name (see MODEL_NAMES)."""
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    keras.utils.set_random_seed(seed)
    if name == "custom_cnn":
        return build_custom_cnn(num_classes, cfg, seed, augment)
    if name in BACKBONES:
        return build_transfer(name, num_classes, cfg, resolve_weights(weights, name), seed, augment)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def count_params(model: keras.Model) -> int:
    return int(sum(int(keras.ops.size(w)) for w in model.weights))


def split_point(model: keras.Model, min_top_layers: int) -> str:
    """Name of the layer where the model can be cut into bottom and top with one tensor between.

    The top part holds at least `min_top_layers` layers (those fine-tuned); the cut moves down
    until a single tensor connects the parts (residual blocks cannot be cut in the middle).
    """
    names = [layer.name for layer in model.layers]
    start = max(1, len(names) - max(1, min_top_layers) - 3)  # 3 head layers sit above the base
    for i in range(start, 0, -1):
        layer = model.layers[i]
        if isinstance(layer.input, list):
            continue
        try:
            keras.Model(layer.input, model.output)
        except Exception:  # "graph disconnected": another tensor crosses the cut
            continue
        return layer.name
    raise ValueError(f"no single-tensor cut found in {model.name} for {min_top_layers} layers")

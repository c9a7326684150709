"""Model registry: builders that return flat functional Keras models taking raw 0-255 RGB pixels.

Every model carries its own preprocessing (and augmentation, active only in training) as layers,
so a saved `.keras` file needs nothing from outside but `geometry.prepare_image`. Transfer models
are built *flat* (the head is attached to the backbone's output tensor, not to the backbone as one
nested layer) because Grad-CAM tools cannot reach layers inside nested models
(tf-keras-vis issues #63 and #71).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pipeline.config import ModelConfig
from pipeline.layers import (
    HeadEqualization,
    HeadStandardization,
    RandomBiasField,
    RandomGamma,
    RandomHistogramMatch,
    RandomIntensityRemap,
)
from pipeline.names import display_name

log = logging.getLogger(__name__)

GRADCAM_LAYER_CUSTOM = "gradcam_target"


class WeightsError(ValueError):
    """Requested pretrained weights cannot be obtained."""


@dataclass(frozen=True)
class WeightsChoice:
    """What a transfer model starts from, as recorded in the manifest."""

    keras_arg: str | None  # value passed to keras.applications (None, "imagenet" or a path)
    label: str  # "imagenet", "none" or the file name
    sha256: str | None = None
    warning: str | None = None


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

MODEL_NAMES = ("custom_cnn", *BACKBONES)


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_weights(spec: str, model_name: str) -> WeightsChoice:
    """Turn `--weights auto|imagenet|none|PATH` into what the backbone constructor gets.

    `auto` never downloads: it uses the Keras cache or `$BRAIN_MRI_WEIGHTS`, else trains from
    scratch with a loud warning. An explicit `imagenet` tries one download (20 s timeout) unless
    `$BRAIN_MRI_OFFLINE` is set, then fails with a message saying how to provide the file.
    """
    if model_name not in BACKBONES:
        return WeightsChoice(None, "none")
    backbone = BACKBONES[model_name]
    spec = (spec or "auto").strip()
    if spec.lower() == "none":
        return WeightsChoice(None, "none")
    cached = keras_cache_dir() / backbone.cache_file if backbone.cache_file else None
    env_path = os.environ.get("BRAIN_MRI_WEIGHTS") if model_name == "mobilenetv2" else None
    how = (
        f"copy the ImageNet no-top weights to {cached} (for MobileNetV2: "
        "../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5), "
        "or pass --weights PATH, or --weights none to train from scratch"
    )
    if spec.lower() in ("auto", "imagenet"):
        if cached is not None and cached.is_file():
            # Pass the file itself: Keras would otherwise look for a size-specific file
            # (e.g. the 96 px one) and try to download it. Conv weights do not depend on size.
            return WeightsChoice(str(cached), "imagenet", sha256_file(cached))
        if env_path and Path(env_path).is_file():
            return _file_weights(Path(env_path), label_prefix="imagenet:")
        if spec.lower() == "auto":
            msg = (f"No ImageNet weights for {display_name(model_name)} found; training it FROM "
                   f"SCRATCH (expect much lower accuracy). To fix: {how}.")
            log.warning(msg)
            return WeightsChoice(None, "none", warning=msg)
        if not os.environ.get("BRAIN_MRI_OFFLINE"):
            try:
                _try_download(model_name)
                if cached is not None and cached.is_file():
                    return WeightsChoice(str(cached), "imagenet", sha256_file(cached))
            except Exception as exc:  # any network/IO failure means "not obtainable"
                log.info("ImageNet weight download failed: %s", exc)
        raise WeightsError(f"ImageNet weights for {display_name(model_name)} are not available "
                           f"offline and could not be downloaded: {how}.")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; use auto, imagenet, none or a "
                           "path to a .h5 / .weights.h5 file")
    if not (path.name.endswith(".h5")):
        raise WeightsError(f"weights file {path} must be a .h5 or .weights.h5 file")
    return _file_weights(path)


def _file_weights(path: Path, label_prefix: str = "") -> WeightsChoice:
    return WeightsChoice(str(path.resolve()), f"{label_prefix}{path.name}", sha256_file(path))


def _try_download(model_name: str) -> None:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        BACKBONES[model_name].constructor(include_top=False, weights="imagenet",
                                          input_shape=(224, 224, 3))
    finally:
        socket.setdefaulttimeout(old)


AUG_STRENGTHS = ("light", "gamma", "mri", "mri-match", "mri-match-texture", "mri-wide", "sequence",
                 "strong")


def augmentation_layers(seed: int, strength: str = "light") -> list[tuple[keras.Layer, bool]]:
    """The random augmentation layers, named `aug_*`, as (layer, geometric) in the order applied.

    Geometric layers move pixels (a tumour mask must move with them: explanation-guided training
    applies them to image and mask together); the others change intensities only.
    "light": flip, small rotation, zoom and contrast. "gamma" adds a random gamma (0.63-1.6)
    only. "mri" adds what differs between MRI scanners without hiding anatomy: gamma, a smooth
    bias field, mild noise and blur. "sequence" is "mri" plus, for half the images, a random
    intensity curve that may reorder grey levels (one MRI sequence's contrast made into
    another's). "mri-match" is "mri" plus, for half the images, the head histogram of a random
    image of the batch (brightness and contrast stop telling the class). "mri-match-texture" is
    "mri-match" with the blur and noise of "strong" and more often (with intensity matched, a
    model may turn to sharpness and grain, which also differ between sources). "mri-wide" is "mri"
    with the wider geometry of "strong" (zoom 0.2, translation): the other sources' slices are
    often framed tighter or off-centre. "strong" adds what
    differs between scanners and exports, so that none of it can serve as a class cue:
    translation, a wider zoom, brightness, stronger contrast, Gaussian noise, blur and random
    erasing (covers corners and burnt-in text as well as anatomy).
    """
    if strength not in AUG_STRENGTHS:
        raise ValueError(f"augment_strength must be one of {AUG_STRENGTHS}, got {strength!r}")
    strong = strength == "strong"
    wide = strength in ("strong", "mri-wide")  # framing differs between sources, too
    layers: list[tuple[keras.Layer, bool]] = [
        (keras.layers.RandomFlip("horizontal", seed=seed, name="aug_flip"), True),
        (keras.layers.RandomRotation(0.04, fill_mode="constant", seed=seed + 1,
                                     name="aug_rotate"), True),
        (keras.layers.RandomZoom(0.2 if wide else 0.1, fill_mode="constant", seed=seed + 2,
                                 name="aug_zoom"), True),
        # RandomContrast expects values in [0, 255] here and clips to value_range.
        (keras.layers.RandomContrast(0.4 if strong else 0.15, value_range=(0, 255),
                                     seed=seed + 3, name="aug_contrast"), False),
    ]
    if strength == "gamma":  # the one shift that costs the guided custom CNN most (issue #16)
        return layers + [(RandomGamma(1.6, seed=seed + 9, name="aug_gamma"), False)]
    translate = [(keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 4,
                                                 name="aug_translate"), True)]
    if strength in ("mri", "mri-match", "mri-match-texture", "mri-wide", "sequence"):
        match = [(RandomHistogramMatch(0.5, seed=seed + 12, name="aug_histmatch"), False)]
        remap = {"sequence": [(RandomIntensityRemap(0.5, seed=seed + 11, name="aug_remap"), False)],
                 "mri-match": match, "mri-match-texture": match}
        texture = strength == "mri-match-texture"
        return layers + (translate if wide else []) + remap.get(strength, []) + [
            (RandomGamma(1.8, seed=seed + 9, name="aug_gamma"), False),
            (RandomBiasField(0.3, seed=seed + 10, name="aug_bias_field"), False),
            (keras.layers.RandomGaussianBlur(factor=0.6 if texture else 0.3,
                                             sigma=(0.0, 1.5 if texture else 1.0),
                                             value_range=(0, 255), seed=seed + 6,
                                             name="aug_blur"), False),
            (keras.layers.Rescaling(1.0 / 255.0, name="aug_noise_in"), False),
            (keras.layers.GaussianNoise(0.025 if texture else 0.015, seed=seed + 7,
                                        name="aug_noise"), False),
            (keras.layers.Rescaling(255.0, name="aug_noise_out"), False),
        ]
    if not strong:
        return layers
    return layers + translate + [
        (keras.layers.RandomBrightness(0.25, value_range=(0, 255), seed=seed + 5,
                                       name="aug_brightness"), False),
        (keras.layers.RandomGaussianBlur(factor=0.5, sigma=(0.0, 1.5), value_range=(0, 255),
                                         seed=seed + 6, name="aug_blur"), False),
        # GaussianNoise takes a stddev in [0, 1]: add it on a 0-1 scale (2.5 % = ~6 grey levels).
        (keras.layers.Rescaling(1.0 / 255.0, name="aug_noise_in"), False),
        (keras.layers.GaussianNoise(0.025, seed=seed + 7, name="aug_noise"), False),
        (keras.layers.Rescaling(255.0, name="aug_noise_out"), False),
        (keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.12), value_range=(0, 255),
                                    seed=seed + 8, name="aug_erase"), False),
    ]


def geometric_augs() -> frozenset[str]:
    """Names of the aug layers that move pixels (a tumour mask must move with them)."""
    return frozenset(layer.name for strength in AUG_STRENGTHS
                     for layer, geometric in augmentation_layers(0, strength) if geometric)


def augmentation_block(x: keras.KerasTensor, seed: int, strength: str = "light"
                       ) -> keras.KerasTensor:
    """`augmentation_layers` applied in order (active in training only), on raw 0-255 pixels."""
    for layer, _ in augmentation_layers(seed, strength):
        x = layer(x)
    return x


def _preprocess(x: keras.KerasTensor, cfg: ModelConfig, transfer: bool,
                backbone_preprocess: Callable[[keras.KerasTensor], keras.KerasTensor] | None
                ) -> keras.KerasTensor:
    """Scaling for the network: per-image head equalisation or standardisation if the config
    asks for it."""
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
    fn = tf.function(lambda t: model(t, training=False), input_signature=[spec])
    return lambda x: fn(tf.convert_to_tensor(x, tf.float32)).numpy()


def _shortcut(block_in: keras.KerasTensor, x: keras.KerasTensor, width: int, name: str
              ) -> keras.KerasTensor:
    """`x` plus the block's input projected to `width` channels (1x1 conv + BN), before the
    block's last ReLU (He et al., 2016): the two-conv blocks learn a residual."""
    skip = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_skip")(block_in)
    skip = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_skip_bn")(skip)
    return keras.layers.Add(name=f"{name}_add")([x, skip])


def build_custom_cnn(num_classes: int, cfg: ModelConfig, seed: int = 42,
                     augment: bool = True) -> BuiltModel:
    """Our own CNN: conv blocks (conv-BN-ReLU, max-pool), widening by 2 per block, pooled head.

    The first blocks use one conv each to stay cheap at high resolution on a CPU; the last two
    use two convs, where the feature maps are small and most of the learning happens. With
    `cfg.residual` those two add a projected shortcut from their input (`_shortcut`).
    """
    if cfg.depth < 2:
        raise ValueError(f"custom_cnn depth must be >= 2, got {cfg.depth}")
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = augmentation_block(inputs, seed, cfg.augment_strength) if augment else inputs
    x = _preprocess(x, cfg, transfer=False, backbone_preprocess=None)
    for block in range(cfg.depth):
        width = cfg.width * 2 ** block  # e.g. 16-32-64-128 filters at the full profile's width 16
        convs = 2 if block >= cfg.depth - 2 else 1
        block_in = x
        for c in range(convs):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                    name=f"block{block + 1}_conv{c + 1}")(x)
            # momentum 0.9 (Keras: 0.99): small datasets give few steps per epoch, and slow
            # running statistics make validation look broken for many epochs.
            x = keras.layers.BatchNormalization(momentum=0.9,
                                                name=f"block{block + 1}_bn{c + 1}")(x)
            last = block == cfg.depth - 1 and c == convs - 1
            if cfg.residual and convs == 2 and c == 1:
                x = _shortcut(block_in, x, width, f"block{block + 1}")
            x = keras.layers.Activation(
                "relu", name=GRADCAM_LAYER_CUSTOM if last else f"block{block + 1}_relu{c + 1}")(x)
        if block < cfg.depth - 1:
            x = keras.layers.MaxPooling2D(name=f"block{block + 1}_pool")(x)
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

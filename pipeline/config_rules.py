"""What a training config may hold: every field's type and range, checked when a config is built.

`config.ModelConfig` and `config.TrainConfig` call these in `__post_init__`, so a bad value in
`train --config FILE` is refused in one line before any data is read or any run folder is made
(a bad augmentation strength used to fail after the whole data pass, 44.8 s on the full
dataset, and leave a resumable temporary run that replayed the failure). Pure Python: loading
or printing a config imports no TensorFlow.

JSON types are taken strictly: `true`/`false` only for switches (never 0/1), a finite number for
a number (a boolean is not one), and a whole number wherever a count is expected; a float with
nothing after the point (`64.0`, as some JSON writers emit integers) is taken as that integer,
`64.5` and `"64"` are refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from pipeline.names import MODEL_NAMES, TRANSFER_MODELS

# The allowed values of the config's choice fields; the modules that act on them import them
# from here (augment.py builds the strengths, fit.py the optimizers, schedules.py the schedules,
# guidance.py the scores).
AUG_STRENGTHS = ("light", "gamma", "mri", "mri-match", "mri-match-texture", "mri-match-blur",
                 "mri-match-sharp", "mri-match-sharp-blur", "mri-wide", "sequence", "strong")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("plateau", "cosine")
GUIDANCE_SCORES = ("log_prob", "logit")  # what the penalised Grad-CAM explains
# The backbones' Grad-CAM layers (MobileNetV2 out_relu, EfficientNetB0 top_activation) sit at
# stride 32 with "same" padding: ceil(size / 32) pixels a side. Keras builds them from 32 px
# (imagenet_utils.obtain_input_shape, min_size=32), where that map is 1 x 1.
BACKBONE_STRIDE = 32
# The largest input side a config may ask for: training memory grows with the pixels (the
# decoded arrays, 3 bytes a pixel per image, and each batch's activations), against a budget of
# 4 GB peak RSS. Measured 2026-12-06 (`peak_rss_mb` in the manifest; the quick profile on 600
# synthetic phantoms, one epoch, batch 32, a loaded 2-core machine): the custom CNN peaked at
# 1293 MiB at 128 px and 2919 at 256 (0.033 MiB, about 35 kB, more per input pixel), so it
# reaches 4 GB near 318 px; MobileNetV2 peaked at 1449 MiB at 160 px and 3230 at 320 (0.023 MiB
# a pixel). 320 (a multiple of the backbones' stride 32) is where the lightest recipe of each
# model reaches the budget; the full recipe uses more (1798 MiB at 128 px for the shipped custom
# CNN: every image, guidance), so a size below the bound may still not fit.
MAX_IMAGE_SIZE = 320
IMAGE_SIZE_WHY = ("training memory grows with the pixels: the lightest recipes reach the 4 GB "
                  "budget there")
IMAGE_SIZE_HELP = f"at most {MAX_IMAGE_SIZE}; {IMAGE_SIZE_WHY}"
# numpy's legacy seeding (keras.utils.set_random_seed) takes seeds below 2**32, and the code adds
# small offsets (seed + 1, seed + view index, ...); 2**31 leaves room for them.
MAX_SEED = 2**31 - 1

_KINDS = {"bool": "true or false", "int": "a whole number", "float": "a number",
          "str": "a string in quotes"}


class ConfigError(ValueError):
    """A config value that cannot be trained with: `field` (a dotted path such as
    `models.custom_cnn.dropout` once the model is known) and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem

    def under(self, prefix: str) -> ConfigError:
        """The same error with its field under `prefix` (e.g. "models.custom_cnn.")."""
        return ConfigError(prefix + self.field, self.problem)


def shown(value: Any) -> str:
    """A user's value as they wrote it in JSON ("64" with its quotes, true, null)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _typed(name: str, value: Any, kind: str) -> Any:
    """`value` as the field's type (`kind` is the annotation's text), or ConfigError."""
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if base not in _KINDS or (optional and value is None):
        return value  # `models` is checked by TrainConfig itself
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if (base == "bool" and isinstance(value, bool)) or (base == "str" and isinstance(value, str)):
        return value
    if base == "int" and number and (isinstance(value, int) or value.is_integer()):
        return int(value)
    if base == "float" and number and (isinstance(value, int) or math.isfinite(value)):
        return value  # an int is a number too (kept as written: the message shows it so)
    raise ConfigError(name, f"must be {_KINDS[base]}{' or null' if optional else ''}, "
                            f"got {shown(value)}")


def check_types(obj: Any) -> None:
    """Check every field of the dataclass `obj` against its annotation, in place (64.0 -> 64)."""
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _typed(f.name, getattr(obj, f.name), str(f.type)))


def _one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(choices)


# field -> (test, what the allowed values are); the fields not listed are switches or free text.
_MODEL_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # the real minimum depends on the model (check_model_named), the maximum is check_model's
    "image_size": (lambda v: v >= 1, ">= 1"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "optimizer": _one_of(OPTIMIZERS),
    "clip_norm": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "lr_schedule": _one_of(LR_SCHEDULES),
    "patience": (lambda v: v >= 0, ">= 0"),
    "ema": (lambda v: 0 <= v < 1, "in [0, 1) (0 = off)"),
    "ema_batchnorm": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "width": (lambda v: v >= 1, ">= 1"),
    "depth": (lambda v: v >= 2, ">= 2 (the last two blocks hold two convolutions each)"),
    "ibn_blocks": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "finetune_epochs": (lambda v: v >= 0, ">= 0 (0 = no fine-tuning)"),
    "finetune_layers": (lambda v: v >= 1, ">= 1"),
    "finetune_learning_rate": (lambda v: v > 0, "> 0"),
    "aug_views": (lambda v: v >= 1, ">= 1 (the original image is the first view)"),
    "label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "input_blur": (lambda v: v >= 0, "a sigma in pixels, >= 0 (0 = off)"),
    "augment_strength": _one_of(AUG_STRENGTHS),
    "guidance": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "balance_sizes": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "guidance_score": _one_of(GUIDANCE_SCORES),
    "transplant": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "erase": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "smooth_lesion": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    "mixup": (lambda v: 0 <= v <= 1, "a Beta parameter in [0, 1]"),
    "segment": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "mixstyle": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
}
_TRAIN_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"in [0, {MAX_SEED}]"),
    "val_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "test_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "max_images": (lambda v: v is None or v >= 1, ">= 1 per class, or null for all"),
    "weights": (lambda v: v != "", "auto, imagenet, none or a weights file's path"),
}


def _check_ranges(obj: Any, ranges: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    for name, (ok, allowed) in ranges.items():
        value = getattr(obj, name)
        if not ok(value):
            raise ConfigError(name, f"must be {allowed}, got {shown(value)}")


def check_seed(seed: int, field: str = "seed") -> None:
    """A seed given outside a config (`tune --seed`, named `field` in the message) under the
    config's own rule: KerasTuner failed every trial on -1 with a traceback each (a review)."""
    ok, allowed = _TRAIN_RANGES["seed"]
    if not ok(seed):
        raise ConfigError(field, f"must be {allowed}, got {shown(seed)}")


def check_model(mc: Any) -> None:
    """A ModelConfig's types, ranges and the rules between its fields (any model)."""
    check_types(mc)
    _check_ranges(mc, _MODEL_RANGES)
    if mc.image_size > MAX_IMAGE_SIZE:
        raise ConfigError("image_size", f"must be at most {MAX_IMAGE_SIZE} ({IMAGE_SIZE_WHY}), "
                                        f"got {mc.image_size}")
    if mc.equalize and mc.standardize:
        raise ConfigError("equalize", "and standardize are two intensity normalisations: "
                                      "choose one")
    if mc.ibn_blocks > 0 and mc.width < 2:
        raise ConfigError("width", f"must be >= 2 with ibn_blocks (half the channels are "
                                   f"instance-normalised), got {mc.width}")
    if mc.segment > 0 and (mc.guidance <= 0 or mc.mixup > 0):
        raise ConfigError("segment", "needs guidance > 0 (it runs in the guided trainer, on its "
                                     "tumour boxes) and no mixup (a blend has no one tumour map)")
    for name in ("transplant", "erase", "smooth_lesion", "mixup"):
        if getattr(mc, name) > 0 and mc.guidance <= 0:  # it needs the boxes guidance loads
            why = "it runs in the guided trainer" if name == "mixup" else "it uses the tumour boxes"
            raise ConfigError(name, f"needs guidance > 0 ({why})")


def min_image_size(model: str, mc: Any) -> int:
    """The smallest input side `model` can be trained and explained at with `mc`: its Grad-CAM
    layer must keep at least 2 x 2 pixels (a 1 x 1 map is one constant colour, nothing to
    explain; measured in tests/test_models.py). The custom CNN halves its maps depth - 1 times
    (2 x 2 max pooling, rounding down): 2 ** depth (it builds from 2 ** (depth - 1), but at
    depth 2 a 2-pixel input breaks the sharpening layer's padding). Backbones: 33 (ceil(33 / 32)
    = 2; Keras builds them from 32)."""
    return 2 ** mc.depth if model == "custom_cnn" else BACKBONE_STRIDE + 1


def check_model_name(model: str) -> None:
    """A key of "models" must name a model the registry builds (a typo was silently ignored)."""
    if model not in MODEL_NAMES:
        raise ConfigError(f"models.{model}", f"is not a model; known: {', '.join(MODEL_NAMES)}")


def check_model_named(model: str, mc: Any) -> None:
    """The rules that depend on which model `mc` configures; fields named under `models.NAME.`."""
    check_model_name(model)
    try:
        check_model(mc)
    except ConfigError as exc:
        raise exc.under(f"models.{model}.") from None
    smallest = min_image_size(model, mc)
    if mc.image_size < smallest:
        why = f" at depth {mc.depth}" if model == "custom_cnn" else ""
        raise ConfigError(f"models.{model}.image_size",
                          f"must be >= {smallest} (the smallest that leaves {model}{why} a "
                          f"Grad-CAM map of 2 x 2 pixels), got {mc.image_size}")


def check_train(cfg: Any) -> None:
    """A TrainConfig's own fields, then each of its models by name."""
    check_types(cfg)
    _check_ranges(cfg, _TRAIN_RANGES)
    if not cfg.official_test and cfg.val_fraction + cfg.test_fraction >= 1:
        raise ConfigError("val_fraction", f"+ test_fraction must be < 1 (some images must be "
                                          f"left to train on), got {cfg.val_fraction} + "
                                          f"{cfg.test_fraction}")
    if not isinstance(cfg.models, dict):
        raise ConfigError("models", f"must be an object of models, got {shown(cfg.models)}")
    for name, mc in cfg.models.items():
        check_model_named(name, mc)


def check_recipe(name: str, mc: Any, cfg: Any) -> None:
    """Refuse what `name`'s training cannot do with `mc` in `cfg` (ConfigError, a ValueError):
    rules between a model's kind and the run's settings, which the per-field checks above cannot
    see. Pure Python: `train --print-config` and the CLI's config building run it too, so a
    recipe training would refuse is refused before any data is read (fit.fit runs it again)."""
    if name not in TRANSFER_MODELS:
        return
    if mc.guidance > 0 and not cfg.cache_features:  # guided only on cached views (fine-tuning)
        raise ConfigError(f"models.{name}.guidance",
                          f"needs cached features (cache_features true), or set {name}'s "
                          "guidance to 0")
    # views are cached before any batch exists
    for option in ("transplant", "erase", "smooth_lesion", "mixup", "segment"):
        if getattr(mc, option) > 0:
            raise ConfigError(f"models.{name}.{option}",
                              f"must be 0: {option} is for from-scratch models; set {name}'s "
                              f"{option} to 0")


def check_recipes(cfg: Any, models: Any) -> None:
    """`check_recipe` for each of `models` (registry names) as `cfg` would train it (a model
    `cfg` does not configure trains with ModelConfig's defaults, which pass)."""
    for name in models:
        if name in cfg.models:
            check_recipe(name, cfg.models[name], cfg)

"""The training-time augmentation layers of every model, by `augment_strength`.

They sit inside the model (active only in training), so a saved `.keras` takes raw pixels;
the cached transfer recipe (aug_views.py) and guided training (guidance.py) apply the same
layers themselves, moving tumour masks with the geometric ones.
"""

from __future__ import annotations

import keras

from pipeline.config_rules import AUG_STRENGTHS
from pipeline.layers import (
    RandomBiasField,
    RandomGamma,
    RandomHistogramMatch,
    RandomIntensityRemap,
    RandomSharpen,
)

# the strengths' names live with the config's other allowed values (config_rules: checked when
# a config is built, before any data is read)
# Keras' RandomGaussianBlur defaults to a 3 x 3 kernel, which caps the blur near sigma 0.8 px
# whatever sigma is asked for; "mri-match-blur" widens it to reach the robustness benchmark's
# blur (sigma 1-2 px at 224 px for its moderate and strongest levels).
WIDE_BLUR_KERNEL = 9


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
    model may turn to sharpness and grain, which also differ between sources); all of these blur
    through Keras' default 3 x 3 kernel, so at most about sigma 0.8 px. "mri-match-blur" is
    "mri-match" whose blur really reaches sigma 2 px (a `WIDE_BLUR_KERNEL` kernel), for about
    half the images. "mri-match-sharp" is "mri-match" plus, for half the images, an unsharp
    mask (soft exports made crisp, as other sources' tumour images are). "mri-match-sharp-blur"
    is "mri-match-sharp" with the wide blur of "mri-match-blur" (sharpness varied both ways, so
    that neither crisp nor soft tells the class). "mri-wide" is "mri"
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
    if strength in ("mri", "mri-match", "mri-match-texture", "mri-match-blur", "mri-match-sharp",
                    "mri-match-sharp-blur", "mri-wide", "sequence"):
        match = [(RandomHistogramMatch(0.5, seed=seed + 12, name="aug_histmatch"), False)]
        sharp = match + [(RandomSharpen(0.5, seed=seed + 13, name="aug_sharpen"), False)]
        remap = {"sequence": [(RandomIntensityRemap(0.5, seed=seed + 11, name="aug_remap"), False)],
                 "mri-match": match, "mri-match-texture": match, "mri-match-blur": match,
                 "mri-match-sharp": sharp, "mri-match-sharp-blur": sharp}
        texture = strength == "mri-match-texture"
        wide_blur = strength in ("mri-match-blur", "mri-match-sharp-blur")
        blur = (dict(factor=1.0, sigma=(0.0, 2.0), kernel_size=WIDE_BLUR_KERNEL) if wide_blur
                else dict(factor=0.6 if texture else 0.3, sigma=(0.0, 1.5 if texture else 1.0)))
        return layers + (translate if wide else []) + remap.get(strength, []) + [
            (RandomGamma(1.8, seed=seed + 9, name="aug_gamma"), False),
            (RandomBiasField(0.3, seed=seed + 10, name="aug_bias_field"), False),
            (keras.layers.RandomGaussianBlur(**blur, value_range=(0, 255), seed=seed + 6,
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

"""Tumour transplants: a source-breaking augmentation for guided training (issue #16).

In the Sartaj data almost every tumour image comes from one collection (figshare) and the
no-tumour images from others, so "looks like figshare" predicts "tumour". The official
`Testing/` folder shows the cost: the custom CNN calls half its gliomas of other sources
"no tumour". A transplant lifts the tumour box of a boxed tumour image and blends it, with soft
edges and the recipient's brightness, into a no-tumour image of the same batch at the same place
in the head-cropped frame. The composite is labelled with the donor's class and its evidence
region is the donor's box, so the guidance penalty asks the model to find the tumour there: the
background's source no longer tells the class.

The opposite counterfactual is `erase`: a boxed tumour image whose box does not cross the
midline gets a copy with the box filled from the mirror-image place of the other hemisphere
(the head-cropped frame is centred on the head, so a left-right flip of the image is that
place), labelled no tumour, with the head as its evidence region: "looks like figshare" stops
telling "tumour" from that side too.

`smooth_lesion` changes a tumour image in place instead: the ellipse inscribed in its box becomes
a smooth bright blob at a random brightness, as a glioma looks on FLAIR or T2 rather than on the
T1 contrast scans behind `Training/`'s tumours (a rim around a dark core), label unchanged.
Filled so, the official run's custom CNN called 49 of 122 boxed validation gliomas meningioma (3
unfilled; MobileNetV2 18 against 9): it told glioma from meningioma by the rim, and `Testing/`'s
FLAIR and T2 gliomas, bright blobs, were its commonest error. The blob takes that cue away from
every tumour class alike, so where the tumour sits has to tell them apart. Measured by shift
validation it did take the cue away, but found fewer gliomas on `Testing/`: off (config.py).

Composites are appended to the batch (the originals stay), before augmentation, so that
geometric layers move image and box together. `mixup` is the one exception: it replaces the
augmented batch by blends of image pairs (Zhang et al., 2018), the draws and blends by
`keras.layers.MixUp`. Everything here runs in the training graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DONOR, NEITHER, RECIPIENT = 1, 0, -1  # per-image roles (`roles`)
FEATHER = 0.12  # blend edge width as a share of the image side: soft edges leave no seam to learn
_BRIGHT = 8.0  # pixels above this grey level count as head when matching brightness
LESION_EDGE = 0.04  # smooth_lesion's blend edge as a share of the side (FEATHER would blur a
# small tumour's whole box); the blob's variation comes from the image low-passed over 0.06
LESION_LEVEL = (1.3, 2.2)  # the blob's mean brightness as a multiple of the head's, drawn per image
MIDLINE_OVERLAP = 0.05  # erase only boxes sharing at most this share with their mirror image:
# a box across the midline would be filled with tumour from its own other half
HEAD_MATCH = 0.9  # and only where the mirror place holds at least this share of the box's head


def roles(boxed: np.ndarray, labels: list[str], no_tumor: str) -> np.ndarray:
    """(N,) int8: DONOR for images with a tumour box, RECIPIENT for no-tumour images."""
    out = np.full(len(labels), NEITHER, np.int8)
    out[np.asarray([lab == no_tumor for lab in labels], bool)] = RECIPIENT
    out[np.asarray(boxed, bool)] = DONOR
    return out


def _feather_px(mask: Any) -> int:
    """FEATHER of a (B, H, W) mask's side in pixels, odd and at least 3."""
    return max(3, int(round(FEATHER * int(mask.shape[1]))) | 1)


def _soft(mask: Any) -> Any:
    """(B, H, W) 0-1 box masks with edges ramped over FEATHER of the side (box blur)."""
    from keras import ops

    k = _feather_px(mask)
    return ops.average_pool(ops.expand_dims(mask, -1), pool_size=k, strides=1,
                            padding="same")[..., 0]


def _head_mean(x: Any) -> Any:
    """(B,) mean grey level over the bright (head) pixels of (B, H, W, 3) images."""
    from keras import ops

    grey = ops.mean(x, axis=-1)
    head = ops.cast(grey > _BRIGHT, "float32")
    return ops.sum(grey * head, axis=(1, 2)) / (ops.sum(head, axis=(1, 2)) + 1.0)


def transplant(x: Any, allowed: Any, y: Any, role: Any, rate: float, seed: Any,
               sample_weight: Any = None) -> tuple[Any, Any, Any, Any]:
    """Append to a batch one composite per no-tumour image chosen with probability `rate`.

    x (B, H, W, 3) float pixels 0-255, allowed (B, H, W) 0-1, y (B, C) one-hot, role (B,)
    from `roles`, seed a keras SeedGenerator. A batch without donor or recipient comes back
    unchanged. Returns x, allowed, y and sample_weight (None stays None) with the composites
    appended.
    """
    import tensorflow as tf
    from keras import ops, random

    role = ops.cast(role, "int32")
    donors = ops.equal(role, DONOR)
    n = ops.shape(x)[0]
    pick = ops.logical_and(ops.equal(role, RECIPIENT),
                           random.uniform((n,), seed=seed) < rate)
    pick = ops.logical_and(pick, ops.any(donors))
    # each recipient draws a donor of the batch uniformly (log 0 for every non-donor)
    logits = ops.broadcast_to(ops.where(donors, 0.0, -1e9)[None, :], (n, n))
    donor = ops.cast(random.categorical(logits, 1, seed=seed)[:, 0], "int32")
    r = ops.cast(tf.where(pick)[:, 0], "int32")  # recipients that get a composite
    d = ops.take(donor, r, axis=0)
    base, box = ops.take(x, r, axis=0), ops.take(ops.cast(allowed, "float32"), d, axis=0)
    patch = ops.take(x, d, axis=0)
    gain = ops.clip(_head_mean(base) / (_head_mean(patch) + 1e-3), 0.5, 2.0)
    alpha = ops.expand_dims(_soft(box), -1)
    mixed = base * (1.0 - alpha) + ops.clip(patch * gain[:, None, None, None], 0.0, 255.0) * alpha
    x = ops.concatenate([x, mixed], axis=0)
    allowed = ops.concatenate([ops.cast(allowed, "float32"), box], axis=0)
    y = ops.concatenate([y, ops.take(y, d, axis=0)], axis=0)
    if sample_weight is not None:  # the composite weighs as an image of its (donor's) class
        sample_weight = ops.concatenate([sample_weight, ops.take(sample_weight, d, axis=0)], 0)
    return x, allowed, y, sample_weight


def _grown(mask: Any) -> Any:
    """(B, H, W) masks grown by half the feather width, so that the soft edge of `_soft` starts
    outside the box and the whole box is replaced."""
    from keras import ops

    k = _feather_px(mask)
    return ops.max_pool(ops.expand_dims(mask, -1), pool_size=k, strides=1, padding="same")[..., 0]


def erase(x: Any, allowed: Any, y: Any, role: Any, rate: float, seed: Any, no_tumor: int,
          sample_weight: Any = None) -> tuple[Any, Any, Any, Any]:
    """Append one tumour-free copy per boxed image chosen with probability `rate` whose grown
    box shares at most MIDLINE_OVERLAP with its mirror image and whose mirror place is head
    (HEAD_MATCH): the box is filled (soft edges)
    from the left-right flipped image, the copy is labelled class `no_tumor` and its evidence
    region is its head (grey level above _BRIGHT).

    Arguments and returns as `transplant`; a copy weighs as the batch's no-tumour images
    (their mean sample weight; 1 in a batch without one).
    """
    import tensorflow as tf
    from keras import ops, random

    role = ops.cast(role, "int32")
    box = _grown(ops.cast(allowed, "float32"))
    area = ops.sum(box, axis=(1, 2))
    # clear of the midline: the box barely meets its own mirror image
    clear = ops.sum(box * ops.flip(box, axis=2), axis=(1, 2)) <= MIDLINE_OVERLAP * (area + 1e-6)
    # and the mirror place is head as much as the box is: no black fill from off the head
    heads = ops.cast(ops.mean(x, axis=-1) > _BRIGHT, "float32")
    on_head = (ops.sum(ops.flip(heads, axis=2) * box, axis=(1, 2))
               >= HEAD_MATCH * ops.sum(heads * box, axis=(1, 2)))
    chosen = random.uniform((ops.shape(x)[0],), seed=seed) < rate
    pick = ops.logical_and(ops.logical_and(ops.equal(role, DONOR), clear),
                           ops.logical_and(on_head, chosen))
    d = ops.cast(tf.where(pick)[:, 0], "int32")
    src = ops.take(x, d, axis=0)
    alpha = ops.expand_dims(_soft(ops.take(box, d, axis=0)), -1)
    clean = src * (1.0 - alpha) + ops.flip(src, axis=2) * alpha
    head = ops.cast(ops.mean(clean, axis=-1) > _BRIGHT, "float32")
    x = ops.concatenate([x, clean], axis=0)
    allowed = ops.concatenate([ops.cast(allowed, "float32"), head], axis=0)
    label = ops.one_hot(ops.full((ops.shape(d)[0],), no_tumor, "int32"), ops.shape(y)[-1])
    y = ops.concatenate([y, ops.cast(label, y.dtype)], axis=0)
    if sample_weight is not None:
        recipients = ops.cast(ops.equal(role, RECIPIENT), sample_weight.dtype)
        w = ops.where(ops.sum(recipients) > 0,
                      ops.sum(sample_weight * recipients) / ops.maximum(ops.sum(recipients), 1),
                      ops.ones((), sample_weight.dtype))
        sample_weight = ops.concatenate(
            [sample_weight, ops.full((ops.shape(d)[0],), w, sample_weight.dtype)], axis=0)
    return x, allowed, y, sample_weight


def mixup(layer: Any, x: Any, allowed: Any, y: Any, sample_weight: Any = None
          ) -> tuple[Any, Any, Any, Any]:
    """The batch blended by `layer` (a `keras.layers.MixUp`): each image with a random partner
    at a Beta(alpha, alpha) weight, labels and sample weights at the same weight. The evidence
    region is the union of the pair's regions: the evidence of either image belongs where it is,
    and a weighted mix would fault a map for lying wholly in one image's box."""
    from keras import ops

    draw = layer.get_random_transformation(x, training=True)
    x = layer.transform_images(x, draw, training=True)
    y = layer.transform_labels(y, draw, training=True)
    allowed = ops.maximum(allowed, ops.take(allowed, draw["permutation_order"], axis=0))
    if sample_weight is not None:
        sample_weight = layer.transform_labels(
            ops.expand_dims(ops.cast(sample_weight, "float32"), -1), draw, training=True)[:, 0]
    return x, allowed, y, sample_weight


def _box_ellipse(box: Any) -> Any:
    """(B, H, W) 0/1: the ellipse inscribed in the bounding box of each mask of `box` (all 0 for
    an empty mask)."""
    from keras import ops

    on = box > 0.5

    def centre_radius(any_line: Any, n: int) -> tuple[Any, Any, Any]:
        idx = ops.cast(ops.arange(n), "float32")[None, :]
        lo = ops.min(ops.where(any_line, idx, float(n)), axis=1)
        hi = ops.max(ops.where(any_line, idx, -1.0), axis=1)
        return (lo + hi) / 2.0, ops.maximum((hi - lo + 1.0) / 2.0, 0.5), idx

    h, w = int(box.shape[1]), int(box.shape[2])
    cy, ry, iy = centre_radius(ops.any(on, axis=2), h)
    cx, rx, ix = centre_radius(ops.any(on, axis=1), w)
    dy = ((iy - cy[:, None]) / ry[:, None])[:, :, None]
    dx = ((ix - cx[:, None]) / rx[:, None])[:, None, :]
    inside = ops.cast(dy * dy + dx * dx <= 1.0, "float32")
    return inside * ops.cast(ops.any(on, axis=(1, 2)), "float32")[:, None, None]


def smooth_lesion(x: Any, allowed: Any, role: Any, rate: float, seed: Any) -> Any:
    """`x` with each boxed image (role DONOR) chosen with probability `rate` changed in place:
    the ellipse inscribed in its box blended (edges ramped over LESION_EDGE of the side) into a
    blob whose brightness is a LESION_LEVEL multiple of the head's mean, give or take a fifth
    of the low-passed image's variation. x (B, H, W, 3) float 0-255, allowed (B, H, W), role
    (B,); the rest unchanged."""
    from keras import ops, random

    side = int(x.shape[1])
    edge = max(3, int(round(LESION_EDGE * side)) | 1)
    low = max(3, int(round(0.06 * side)) | 1)
    ellipse = _box_ellipse(ops.cast(allowed, "float32"))
    alpha = ops.average_pool(ops.expand_dims(ellipse, -1), edge, strides=1, padding="same")
    smooth = x
    for _ in range(2):  # two box filters: close to a Gaussian, no ringing
        smooth = ops.average_pool(smooth, low, strides=1, padding="same")
    area = ops.sum(ellipse, axis=(1, 2)) + 1e-3
    inside = ops.sum(ops.mean(smooth, axis=-1) * ellipse, axis=(1, 2)) / area
    n = ops.shape(x)[0]
    level = random.uniform((n,), *LESION_LEVEL, seed=seed) * _head_mean(x)
    # mostly flat: a low-pass at any fixed width keeps a large tumour's rim; a fifth of the
    # low-passed image's variation stays, so the blob is not one grey level
    ratio = smooth / (inside + 1e-3)[:, None, None, None]
    blob = ops.clip(level[:, None, None, None] * (0.8 + 0.2 * ratio), 0.0, 255.0)
    pick = ops.logical_and(ops.equal(ops.cast(role, "int32"), DONOR),
                           random.uniform((n,), seed=seed) < rate)
    filled = x * (1.0 - alpha) + blob * alpha
    return ops.where(pick[:, None, None, None], filled, x)

"""Tumour transplants: a source-breaking augmentation for guided training (issue #16).

In the Sartaj data almost every tumour image comes from one collection (figshare) and the
no-tumour images from others, so "looks like figshare" predicts "tumour". The official
`Testing/` folder shows the cost: the custom CNN calls half its gliomas of other sources
"no tumour". A transplant lifts the tumour box of a boxed tumour image and blends it, with soft
edges and the recipient's brightness, into a no-tumour image of the same batch at the same place
in the head-cropped frame. The composite is labelled with the donor's class and its evidence
region is the donor's box, so the guidance penalty asks the model to find the tumour there: the
background's source no longer tells the class.

Composites are appended to the batch (the no-tumour originals stay), before augmentation, so
that geometric layers move image and box together. Everything here runs in the training graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DONOR, NEITHER, RECIPIENT = 1, 0, -1  # per-image roles (`roles`)
FEATHER = 0.12  # blend edge width as a share of the image side: soft edges leave no seam to learn
_BRIGHT = 8.0  # pixels above this grey level count as head when matching brightness


def roles(boxed: np.ndarray, labels: list[str], no_tumor: str) -> np.ndarray:
    """(N,) int8: DONOR for images with a tumour box, RECIPIENT for no-tumour images."""
    out = np.full(len(labels), NEITHER, np.int8)
    out[np.asarray([lab == no_tumor for lab in labels], bool)] = RECIPIENT
    out[np.asarray(boxed, bool)] = DONOR
    return out


def _soft(mask: Any) -> Any:
    """(B, H, W) 0-1 box masks with edges ramped over FEATHER of the side (box blur)."""
    from keras import ops

    k = max(3, int(round(FEATHER * int(mask.shape[1]))) | 1)
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

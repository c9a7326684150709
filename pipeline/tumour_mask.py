"""An auxiliary tumour-mask task for guided from-scratch training (issue #16, #17).

Guidance only forbids evidence outside the tumour box; it never says what a tumour looks like,
so a from-scratch CNN can still find, inside the box, whatever tells the training source apart.
This task asks the Grad-CAM layer's features to *draw* the tumour: a 1 x 1 convolution (held by
the trainer, not saved with the model) maps them to a tumour-probability map, trained against
the box (boxed tumour images) or an empty map (no-tumour images). Tumour images without a box,
and composites appended in the batch (transplants, erased copies), add nothing. The classifier's
max-pooled head can then read a tumour detector that was taught on tumour tissue rather than on
the image's source. The saved model is the plain classifier: nothing changes at inference.
"""

from __future__ import annotations

from typing import Any

from pipeline.transplant import DONOR, RECIPIENT


def targets(allowed: Any, role: Any, size: tuple[int, int]) -> tuple[Any, Any]:
    """(B, h, w) target maps in [0, 1] and (B,) 0/1 weights from the batch's (B, H, W) evidence
    regions at input size and per-image roles (`transplant.roles`; 0 for appended images).

    A DONOR's region is its tumour box (its target); a RECIPIENT (no tumour) gets an empty map;
    anything else gets weight 0 (an unboxed tumour image's region is its head, not its tumour)."""
    from keras import ops

    small = ops.image.resize(ops.expand_dims(ops.cast(allowed, "float32"), -1), size,
                             interpolation="area")[..., 0]
    role = ops.cast(role, "int32")
    donor = ops.cast(ops.equal(role, DONOR), "float32")
    weight = donor + ops.cast(ops.equal(role, RECIPIENT), "float32")
    return small * donor[:, None, None], weight


def loss(logits: Any, target: Any, weight: Any) -> Any:
    """Scalar: per-pixel binary cross-entropy of (B, h, w, 1) logits against (B, h, w) targets,
    averaged over each image's map, then weighted over the batch (0 when no image counts)."""
    from keras import ops

    per_pixel = ops.binary_crossentropy(target, logits[..., 0], from_logits=True)
    per_image = ops.mean(per_pixel, axis=(1, 2))
    return ops.sum(per_image * weight) / ops.maximum(ops.sum(weight), 1.0)

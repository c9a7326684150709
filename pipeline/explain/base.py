"""What every explanation method shares: the `Method` interface and per-map normalisation.

Kept apart from the registry (`methods.py`) so the method modules (`cams.py`, `smoothgrad.py`,
`methods.py`) import it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from pipeline.explain.explainer import Explainer

# (heatmaps (N, H, W) float32 in [0, 1], probs (N, C), explained class per image (N,))
Result = tuple[np.ndarray, np.ndarray, np.ndarray]


class Method:
    """One explanation method (a stateless singleton in `REGISTRY`).

    `name`: what the CLI, the manifest and explanations.json say; `label`: what people read;
    `needs_layer`: reads a convolutional feature map (the Explainer passes a layer) rather than
    input pixels (layer None); `cost`: "fast" = about one forward and one backward pass per batch,
    "slow" = tens of passes per image; `summary`: what its map shows, in a few words (the
    dashboard's help on the method box lists every method's); `class_specific`: the map depends
    on the class it explains (False for a class-agnostic method such as Eigen-CAM, whose map is
    the same whatever the target: captions then name no class, and the tests that check a
    method follows its target leave it out).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    summary: ClassVar[str]
    needs_layer: ClassVar[bool] = True
    cost: ClassVar[str] = "fast"
    class_specific: ClassVar[bool] = True

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        """Heatmaps of float32 images `x` (N, H, W, 3) in 0-255 for `targets` (N,) int32, where
        -1 means "the predicted class"; returns (heatmaps, probs, explained classes)."""
        raise NotImplementedError


def minmax_per_sample(cam: Any) -> Any:
    """Each (N, H, W) map stretched to [0, 1] (TensorFlow); a flat map becomes all 0."""
    import tensorflow as tf

    # divide_no_nan rather than "+ epsilon": an untrained model's CAM can span 1e-6, and a fixed
    # epsilon would squash it towards 0 instead of stretching it to [0, 1]; flat maps become 0.
    lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(cam - lo, hi - lo)

"""Mirror averaging: a method's map of the image averaged with its map of the left-right
mirrored image, flipped back ("aug smooth" in jacobgil/pytorch-grad-cam, which also scales the
brightness; we only mirror, the one change both models were trained on: `augment.py`'s
horizontal flip).

Why: a 16x16 (custom CNN) or 7x7 (MobileNetV2) feature map samples the image on a coarse grid,
so where its peak lands depends on how the tumour sits against that grid; the mirrored image
meets the grid from the other side. Averaging the two keeps what both see. Measured on the
shipped main-split run's 352 validation images with a box (2026-12-06): the custom CNN's
HiResCAM pointed at the box for 0.810 of them, 0.824 mirror-averaged (energy in box 0.536 /
0.535; hottest box-sized region in the box 0.542 / 0.587); multi-layer LayerCAM 0.830 / 0.841;
MobileNetV2's multi-layer LayerCAM 0.895 / 0.906. On the official run's 345: 0.855 / 0.867
(custom CNN) and 0.884 / 0.884 (MobileNetV2), multi-layer LayerCAM. Plain Grad-CAM did not gain
(0.599 / 0.577, main split), so it has no mirrored twin. None of these gains is significant
alone (McNemar p >= 0.38).

Each mirrored method is one tiny class naming its base; the class explained is the one resolved
on the original image (a "predicted class" target would otherwise be the mirror's prediction),
and the probabilities are the original image's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from pipeline.explain.base import Method, Result, minmax_per_sample
from pipeline.explain.cams import HiResCam, LayerCam, LayerCamFusion

if TYPE_CHECKING:
    from pipeline.explain.explainer import Explainer


class Mirrored(Method):
    """`base`'s map averaged with its map of the mirrored image (flipped back): two passes of
    `base`, so the same cost class."""

    base: ClassVar[Method]

    def __call__(
        self, explainer: Explainer, x: np.ndarray, targets: np.ndarray, layer: str | None
    ) -> Result:
        heat, probs, chosen = self.base(explainer, x, targets, layer)
        twin, _, _ = self.base(explainer, np.ascontiguousarray(x[:, :, ::-1]),
                               np.asarray(chosen, dtype=np.int32), layer)
        both = (heat + twin[:, :, ::-1]) / 2.0
        return minmax_per_sample(both.astype(np.float32)).numpy(), probs, chosen


class HiResCamMirror(Mirrored):
    base = HiResCam()
    name = "hirescam-mirror"
    label = "HiResCAM, mirror-averaged"
    summary = "HiResCAM averaged with its map of the mirrored image: alike for either side"


class LayerCamMirror(Mirrored):
    base = LayerCam()
    name = "layercam-mirror"
    label = "LayerCAM, mirror-averaged"
    summary = "LayerCAM averaged with its map of the mirrored image: alike for either side"


class LayerCamFusionMirror(Mirrored):
    base = LayerCamFusion()
    name = "layercam-fusion-mirror"
    label = "Multi-layer LayerCAM (fusion), mirror-averaged"
    summary = "multi-layer LayerCAM averaged with its mirrored map: alike for either side"

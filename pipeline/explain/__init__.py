"""Explanations: Grad-CAM family, overlays and measured explanation quality.

Pure functions and small callable objects only (no Streamlit); the dashboard and the CLI share them.

* `Explainer(model)` (`explainer.py`) builds its gradient graph once per (method, layer) and reuses
  it, so a Grad-CAM costs about one forward plus one backward pass; `layers.py` finds the layers
  it can read and the class scores before the softmax.
* `REGISTRY` (`methods.py`): one small class per method (Grad-CAM, Grad-CAM++, Score-CAM,
  SmoothGrad) with its name, label, layer need and cost; `METHODS`, `LAYER_METHODS` and
  `METHOD_LABELS` derive from it.
* `render_overlay`, `heatmap_to_rgb`, `to_png`, `heatmap_stats` (`render.py`): drawing.
* `pointing_game`, `energy_in_mask`, `deletion_insertion`, `randomize_model`, `spearman`
  (`metrics.py`): quality metrics on plain arrays; `head_box`, `prepare_mask`, `find_mask`
  (`masks.py`) bring tumour masks into the model's frame; `explain_eval` (`quality.py`) runs the
  metrics over a run's test split.

Models take raw RGB pixels 0-255 (preprocessing is inside the model), so every image here is
(H, W, 3) in 0-255 at the model's input size. Everything public is importable from
`pipeline.explain` directly.
"""

from pipeline.explain.explainer import Explainer, Explanation
from pipeline.explain.layers import conv_layers, default_layer
from pipeline.explain.masks import find_mask, head_box, prepare_mask
from pipeline.explain.methods import (
    LAYER_METHODS,
    METHOD_LABELS,
    METHODS,
    REGISTRY,
    Method,
    get_method,
)
from pipeline.explain.metrics import (
    BASELINES,
    baseline_image,
    deletion_insertion,
    energy_in_mask,
    pointing_game,
    random_heatmap,
    randomize_model,
    spearman,
)
from pipeline.explain.quality import explain_eval, explain_model
from pipeline.explain.render import (
    heatmap_stats,
    heatmap_to_rgb,
    render_overlay,
    to_png,
    top_region,
)

__all__ = [
    "BASELINES",
    "LAYER_METHODS",
    "METHOD_LABELS",
    "METHODS",
    "REGISTRY",
    "Explainer",
    "Explanation",
    "Method",
    "baseline_image",
    "conv_layers",
    "default_layer",
    "deletion_insertion",
    "energy_in_mask",
    "explain_eval",
    "explain_model",
    "find_mask",
    "get_method",
    "head_box",
    "heatmap_stats",
    "heatmap_to_rgb",
    "pointing_game",
    "prepare_mask",
    "random_heatmap",
    "randomize_model",
    "render_overlay",
    "spearman",
    "to_png",
    "top_region",
]

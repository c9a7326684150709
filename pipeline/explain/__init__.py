"""Explanations: Grad-CAM family, overlays and measured explanation quality.

Pure functions and small callable objects only (no Streamlit); the dashboard and the CLI share them.

* `Explainer(model)` (`explainer.py`) builds its gradient graph once per (method, layer) and reuses
  it, so a Grad-CAM costs about one forward plus one backward pass; `layers.py` finds the layers
  it can read and the class scores before the softmax.
* `REGISTRY` (`methods.py`): one small class per method (Grad-CAM, HiResCAM, LayerCAM,
  multi-layer fusion, Grad-CAM++, Score-CAM, SmoothGrad) with its name, label, layer need and
  cost; `METHODS`, `LAYER_METHODS` and `METHOD_LABELS` derive from it. `choice.py` picks each
  model's default method and layer on validation boxes (`explain-choose`).
* `render_overlay`, `heatmap_to_rgb`, `to_png`, `heatmap_stats` (`render.py`): drawing.
* `pointing_game` (and its centre-of-head baseline `head_centre_hit`; its Wilson interval
  is `pipeline.intervals.share_interval`, which loads no Keras), `energy_in_mask`,
  `top_in_mask`, `is_empty`,
  `deletion_insertion`, `road`, `randomize_model`, `spearman`, the shortcut alarm
  (`top_outside_head`, `outside_head_flag`) (`metrics.py`): quality metrics on plain arrays;
  `head_box`, `prepare_mask`, `find_mask` (`masks.py`) bring tumour masks into the model's
  frame; `explain_model` (`scoring.py`) scores one model's explanations of prepared images with
  them, and `explain_eval` (`quality.py`) runs that over a run's test split or an external
  folder.

Models take raw RGB pixels 0-255 (preprocessing is inside the model), so every image here is
(H, W, 3) in 0-255 at the model's input size. Everything public is importable from
`pipeline.explain` directly; each name is loaded from its module on first use (PEP 562), so
`pipeline.explain.METHODS` and the labels cost no TensorFlow import: the CLI builds its help
and the dashboard its method list from the registry without loading a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "Explainer": "explainer", "Explanation": "explainer",
    "conv_layers": "layers", "default_layer": "layers",
    "find_mask": "masks", "head_box": "masks", "head_mask_in_frame": "masks",
    "prepare_mask": "masks", "read_mask": "masks",
    "LAYER_METHODS": "methods", "METHOD_LABELS": "methods", "METHODS": "methods",
    "REGISTRY": "methods", "Method": "methods", "get_method": "methods",
    "methods_in_words": "methods", "target_words": "methods",
    "BASELINES": "metrics", "baseline_image": "metrics", "deletion_insertion": "metrics",
    "energy_in_mask": "metrics", "pointing_game": "metrics", "is_empty": "metrics",
    "top_in_mask": "metrics", "head_centre_hit": "metrics",
    "random_heatmap": "metrics",
    "OUTSIDE_HEAD_ALARM": "alarm", "OUTSIDE_HEAD_MESSAGE": "alarm",
    "energy_outside_head": "metrics", "outside_head_flag": "metrics",
    "top_outside_head": "metrics", "SHORTCUT_TOP": "alarm",
    "randomize_model": "metrics", "spearman": "metrics", "road": "metrics",
    "ROAD_FRACTIONS": "metrics", "noisy_linear_impute": "imputation",
    "stage_layers": "layers",
    "explain_eval": "quality", "explain_model": "scoring", "boxes_dir": "masks",
    "default_masks_dir": "masks", "box_source_classes": "masks",
    "heatmap_stats": "render", "heatmap_to_rgb": "render", "render_overlay": "render",
    "to_png": "render", "top_region": "render",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads on demand
    from pipeline.explain.explainer import Explainer, Explanation  # noqa: F401
    from pipeline.explain.methods import METHOD_LABELS, METHODS, REGISTRY  # noqa: F401


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

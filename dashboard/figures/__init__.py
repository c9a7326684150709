"""Pure plotly figure builders: artifact dicts in, figures (or tables) out.

Nothing here imports Streamlit or touches the file system, so every builder can be unit-tested
with hand-made dicts in the formats of docs/architecture.md. Malformed input raises
`FigureDataError` naming the offending value, which the pages turn into a readable message.
Colours are left to the Streamlit plotly theme except for models and classes, which keep one
colour each across every figure so a viewer can follow them from chart to chart.

The builders live in one module per page section: `evaluation` (Overview: test metrics,
ROC/PR curves), `training` (Overview: training curves), `calibration` (Overview: reliability
diagram, ECE against a calibrated model's floor), `robustness` (Overview: accuracy under image
shifts), `ood` (Overview: how well the "unlike the training data" score tells images apart),
`predictions` (one image's class probabilities), `legend` (the heatmaps' colour scale with
numbers, a picture), `quality` (Explanation quality) and `choice` (what each default
explanation was chosen from);
`common` holds the shared colours, names and checks. Import them from here (`from dashboard
import figures as F`).
"""

from dashboard.figures.calibration import (
    ece_floor_sentences,
    reliability_figure,
    reliability_points,
    scaling_worse_sentences,
)
from dashboard.figures.choice import choice_caption, choice_table
from dashboard.figures.common import (
    CLASS_PALETTE,
    FONT_SIZE,
    MODEL_COLORS,
    FigureDataError,
    class_color,
    class_name,
    contrast,
    modebar_room,
    model_color,
    model_label,
    readable,
    text_color_on,
)
from dashboard.figures.comparison import (
    comparison_verdict,
    difference_sentence,
    mcnemar_sentence,
)
from dashboard.figures.curves import class_prevalence, curve_areas, pr_figure, roc_figure
from dashboard.figures.evaluation import (
    HEADLINE_METRICS,
    ci_figure,
    confusion_figure,
    confusion_values,
    copies_sentence,
    interval_words,
    metrics_table,
    per_class_figure,
    size_gaps,
    size_group_table,
    tumour_figure,
)
from dashboard.figures.faithfulness import (
    faithfulness_curves_figure,
    faithfulness_figure,
    has_curves,
    has_road,
    road_figure,
)
from dashboard.figures.glossary import GLOSSARY, glossary_markdown
from dashboard.figures.legend import LEGEND_CAPTION, LEGEND_WIDTH, colour_legend, legend_caption
from dashboard.figures.ood import ood_caption, ood_table
from dashboard.figures.predictions import probability_table
from dashboard.figures.quality import (
    LOCALISATION_CAPTION,
    localisation_figure,
    method_label,
    per_image_table,
    quality_summary,
    sanity_figure,
    shortcut_figure,
)
from dashboard.figures.robustness import (
    levels_table,
    noise_sentence,
    robustness_figure,
    severe_drops_sentence,
)
from dashboard.figures.table import chart_name, figure_table, plain, table_meta
from dashboard.figures.training import (
    last_epoch_sentences,
    loss_gap_sentences,
    smoothing_floor,
    training_curves_figure,
)

__all__ = [
    "chart_name", "figure_table", "plain", "table_meta",
    "choice_caption",
    "choice_table",
    "GLOSSARY", "glossary_markdown",
    "CLASS_PALETTE",
    "FONT_SIZE", "HEADLINE_METRICS", "LEGEND_CAPTION", "LEGEND_WIDTH", "legend_caption",
    "LOCALISATION_CAPTION", "MODEL_COLORS",
    "FigureDataError", "ci_figure", "class_prevalence", "comparison_verdict", "difference_sentence",
    "interval_words",
    "class_color", "class_name", "colour_legend", "confusion_figure", "contrast",
    "confusion_values", "copies_sentence", "ece_floor_sentences", "scaling_worse_sentences",
    "faithfulness_curves_figure", "last_epoch_sentences", "loss_gap_sentences",
    "smoothing_floor",
    "faithfulness_figure", "has_curves", "has_road", "localisation_figure", "mcnemar_sentence",
    "curve_areas", "metrics_table", "model_color",
    "method_label", "model_label", "ood_caption", "ood_table", "per_class_figure",
    "per_image_table",
    "readable", "modebar_room",
    "pr_figure",
    "probability_table",
    "reliability_figure",
    "quality_summary", "reliability_points", "road_figure", "robustness_figure", "roc_figure",
    "levels_table", "noise_sentence", "severe_drops_sentence",
    "sanity_figure",
    "size_gaps", "size_group_table",
    "shortcut_figure", "text_color_on", "training_curves_figure", "tumour_figure",
]

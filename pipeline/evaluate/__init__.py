"""Evaluation: per-model metrics, paired comparison, tumour-vs-no-tumour view, CV, external data.

One module per stage; this package re-exports their public API, so `from pipeline.evaluate
import X` works for every X below.

- `metrics`: pure per-model metrics from arrays (scikit-learn; hand-written calibration bins).
- `comparison`: models on the same images: paired bootstrap, exact McNemar, plain-language verdict.
- `external`: scoring another data folder's labels against a run's classes, training overlap.
- `run`: `evaluate_run` (predict a run's test split or a folder, write the evaluation files).
- `cv`: `cross_validate` (retrain on group-stratified folds, evaluate each, pool the results).
- `robustness`: `robustness_run` (the test split under MRI-realistic shifts; shift validation).

Decision rule used everywhere: a model's prediction is the arg-max class. "Tumour" means any class
other than `no_tumor`, so a four-class prediction counts as a tumour call when its predicted label
is not `no_tumor` (the same numbers a reader gets by collapsing the confusion matrix).
"""

from pipeline.evaluate.comparison import (
    ALPHA,
    bootstrap_ci,
    compare,
    mcnemar_exact,
    paired_bootstrap,
    verdict,
)
from pipeline.evaluate.cv import CV_METRICS, cross_validate, cv_folds
from pipeline.evaluate.external import (
    BINARY_CLASSES,
    EvaluationError,
    LabelPlan,
    collapse_to_binary,
    map_external_labels,
    training_overlap,
)
from pipeline.evaluate.metrics import (
    NO_TUMOR,
    PROB_TOLERANCE,
    by_size_group,
    calibration,
    check_inputs,
    classification_metrics,
    confusion,
    curves,
    predicted_classes,
    top_confusions,
    tumor_vs_no_tumor,
)
from pipeline.evaluate.robustness import SEVERITIES, SHIFTS, TARGET_DROP, robustness_run
from pipeline.evaluate.run import (
    PREDICT_CHUNK,
    evaluate_run,
    metrics_summary,
    write_model_eval,
    write_predictions_csv,
)

__all__ = [
    "ALPHA", "BINARY_CLASSES", "CV_METRICS", "NO_TUMOR", "PREDICT_CHUNK", "PROB_TOLERANCE",
    "SEVERITIES", "SHIFTS", "TARGET_DROP",
    "EvaluationError", "LabelPlan",
    "bootstrap_ci", "by_size_group", "calibration", "check_inputs", "classification_metrics",
    "collapse_to_binary",
    "compare", "confusion", "cross_validate", "curves", "cv_folds", "evaluate_run",
    "map_external_labels", "mcnemar_exact", "metrics_summary", "paired_bootstrap",
    "predicted_classes", "robustness_run", "top_confusions", "training_overlap",
    "tumor_vs_no_tumor", "verdict", "write_model_eval", "write_predictions_csv",
]

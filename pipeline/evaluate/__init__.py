"""Evaluation: per-model metrics, paired comparison, tumour-vs-no-tumour view, CV, external data.

One module per stage; this package re-exports their public API, so `from pipeline.evaluate
import X` works for every X below (each loaded from its module on first use).

- `metrics`: pure per-model metrics from arrays (scikit-learn; hand-written calibration bins).
- `comparison`: models on the same images: paired bootstrap, exact McNemar, plain-language verdict.
- `external`: scoring another data folder's labels against a run's classes, training overlap.
- `run`: `evaluate_run` (predict a run's test split or a folder, write the evaluation files).
- `decoding`: `predict_all` (every model's answers, each file decoded once, looked up on the way).
- `cv`: `cross_validate` (retrain on group-stratified folds, evaluate each, pool the results).
- `robustness`: `robustness_run` (the test split under MRI-realistic shifts; shift validation).
- `together`: both models' answer pooled (mean log-probability, one validation temperature).

Decision rule used everywhere: a model's prediction is the arg-max class. "Tumour" means any class
other than `no_tumor`, so a four-class prediction counts as a tumour call when its predicted label
is not `no_tumor` (the same numbers a reader gets by collapsing the confusion matrix).
"""

from __future__ import annotations

from pipeline.lazy import lazy_exports

# public name -> submodule that defines it. Loaded on first use (PEP 562), like
# `pipeline.explain`: the dashboard reads `pipeline.evaluate.flags` on its first page, and the
# package's eager imports (scipy.stats, scikit-learn) cost it about 1 s before anything showed.
_EXPORTS = {
    **dict.fromkeys(["ALPHA", "bootstrap_ci", "compare", "mcnemar_exact", "paired_bootstrap",
                     "verdict"], "comparison"),
    **dict.fromkeys(["CV_METRICS", "cross_validate", "cv_folds"], "cv"),
    **dict.fromkeys(["BINARY_CLASSES", "EvaluationError", "LabelPlan", "collapse_to_binary",
                     "map_external_labels", "training_overlap"], "external"),
    **dict.fromkeys(["NO_TUMOR", "PROB_TOLERANCE", "by_copy_group", "by_size_group", "calibration",
                     "check_inputs", "classification_metrics", "confusion", "curves",
                     "predicted_classes", "top_confusions", "tumor_vs_no_tumor"], "metrics"),
    **dict.fromkeys(["SEVERITIES", "SHIFTS", "TARGET_DROP", "robustness_run"], "robustness"),
    **dict.fromkeys(["PREDICT_CHUNK", "predict_all"], "decoding"),
    **dict.fromkeys(["evaluate_run", "metrics_summary", "write_model_eval",
                     "write_predictions_csv"], "run"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

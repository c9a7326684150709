"""What the Overview's figures mean, in one place (a student's review, 2026-12-05: ECE, McNemar,
bootstrap, balanced accuracy, macro-F1 and PR AUC were used on the pages but defined nowhere).
Each definition says what the project computes (`pipeline.evaluate.metrics`, `.comparison`)."""

from __future__ import annotations

from pipeline.names import TOGETHER_LABEL, TOGETHER_MEANING

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("Accuracy", "the share of test images whose predicted class is their label."),
    ("Balanced accuracy", "the mean over classes of the share of each class's images answered "
     "right: every class counts the same, however many images it has."),
    ("Macro F1 / weighted F1", "F1 is the harmonic mean of a class's precision (of the images "
     "called that class, the share that are) and recall (of that class's images, the share "
     "found); macro F1 averages it over the classes equally, weighted F1 weights each class "
     "by its number of images."),
    ("ROC AUC (macro)", "per class, the chance that an image of the class gets a higher "
     "probability for it than an image of another class (0.5 = guessing, 1 = perfect), "
     "averaged over the classes."),
    ("PR AUC (macro)", "per class, the average precision along the precision-recall curve "
     "(guessing scores the class's share of the images), averaged over the classes."),
    ("Sensitivity / specificity", "tumour against no tumour, any tumour class counting as "
     "'tumour': the share of tumour slices called a tumour, and of no-tumour slices called "
     "'no tumour'."),
    # a clinician's review (2026-12-07): "65%" read as the chance that the patient has the
    # disease, and "confidence" was used on cards but defined nowhere
    ("Probability / confidence", "the percentage a model gives a class (its confidence: the "
     "answer's), temperature-scaled on the run's validation images. A score of the model, not "
     "the chance that this patient has a tumour: it depends on the training data's mix of "
     "classes, and runs high on images of other sources."),
    ("ECE (expected calibration error)", "the answers' confidences are put in 10 equal bins; "
     "ECE is the mean gap between a bin's confidence and its accuracy, weighted by the bin's "
     "size (0 = a model right 90% of the time when it says 90%). On a finite test set even a "
     "perfectly calibrated model shows some ECE: the calibration tab says how much."),
    ("Temperature T", "calibration divides the model's log-probabilities by T before the "
     "softmax, T fitted on the run's validation images; T below 1 makes answers more "
     "confident, above 1 less."),
    ("95% bootstrap interval", "the range a figure takes in 95% of 2000 resamplings of the "
     "test images (drawn with replacement): how much it could move on another test set of "
     "this size from the same sources, not on images from another source."),
    ("Wilson score interval", "the 95% interval of a share (k of n right) in closed form; "
     "unlike a bootstrap it stays wide where n is small and does not collapse to one value "
     "at 0 or n right."),
    (TOGETHER_LABEL, TOGETHER_MEANING),
    ("McNemar exact test", "compares two models on the same images using only those exactly "
     "one of them got right; p is the chance of a split at least this uneven if the two "
     "were equally good."),
)


def glossary_markdown() -> str:
    """The glossary as a Markdown list (terms in bold)."""
    return "\n".join(f"- **{term}**: {meaning}" for term, meaning in GLOSSARY)

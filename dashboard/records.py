"""What a run measured that the dashboard quotes beside answers and heatmaps: robustness
(`robustness.json`), how often flagged answers were right (`flags.json`), metrics.json's
records (by pixel size, tumour against no tumour, the test ECE under every probability table,
the models' pooled answer's accuracy from comparison.json)
and the explanations' records (each default heatmap's pointing game per class, and the
two-heatmap rule's record on the test boxes and on each external folder). Read through
`state.run_json` (cached until a file changes); a missing or damaged file leaves its record
out, and the pages say nothing of it.
"""

from __future__ import annotations

from typing import Any

from dashboard import flags, runinfo
from dashboard.calibration_line import calibration_note as calibration_line
from dashboard.state import external_explanations, run_json
from pipeline import run_files
from pipeline.artifacts import ArtifactError, Run
from pipeline.calibration import LOW_CONFIDENCE_ACCURACY
from pipeline.evaluate.flags import FILE as FLAGS_FILE
from pipeline.explain import agreement
from pipeline.explain.defaults import is_default
from pipeline.names import NEITHER_WORDS, TOGETHER_LABEL, TOGETHER_MEANING, percent


def shifted_accuracy(run: Run) -> dict[str, flags.ShiftedAccuracy | None]:
    """Per model, its accuracy over the robustness benchmark's middle severity, mean and worst,
    with the unshifted one (`robustness.json`); {} when the run has none."""
    path = run.path / run_files.ROBUSTNESS
    if not path.is_file():
        return {}
    try:
        report = run_json(run, run_files.ROBUSTNESS)
    except ArtifactError:
        return {}
    return flags.middle_severity_accuracy(report)


def flag_accuracy(run: Run) -> dict[str, dict]:
    """Per model, how often its test answers were right with each warning (`flags.json`'s
    "models", written by `ood`); {} when the run has none or it cannot be read."""
    if not (run.path / FLAGS_FILE).is_file():
        return {}
    try:
        models = run_json(run, FLAGS_FILE).get("models")
    except (ArtifactError, AttributeError):
        return {}
    return {str(m): v for m, v in models.items() if isinstance(v, dict)} \
        if isinstance(models, dict) else {}


def _metrics_entry(run: Run, key: str) -> dict[str, dict | None]:
    """Per model, `key` of its metrics.json; None where absent or the file cannot be read."""
    out: dict[str, dict | None] = {}
    for m in run.model_names:
        try:
            out[m] = run_json(run, f"{m}/metrics.json").get(key)
        except (ArtifactError, AttributeError):
            out[m] = None
    return out


def calibration_note(run: Run, predictor: Any) -> str:
    """`calibration_line.calibration_note` for `run`: the temperatures `predictor` applies, each
    model's test ECE from its metrics.json, and whether the test split is the official test
    folder."""
    tests: dict[str, dict | None] = {}
    for m in run.model_names:
        try:
            entry = run_json(run, f"{m}/metrics.json")
        except ArtifactError:
            entry = None
        tests[m] = entry if isinstance(entry, dict) else None
    official = bool(runinfo.run_facts(run.manifest).splits.get("official_test"))
    applied = getattr(predictor, "calibrated", True)  # a Predictor made with calibrated=False
    return calibration_line({m: predictor.temperature(m) if applied else None
                                   for m in run.model_names},
                                  tests, official)


def together_note(run: Run) -> str:
    """How often the models' pooled answer (`evaluate.together`) was right on the run's test
    images, beside each model's alone (comparison.json's "together"); "" when not measured."""
    from pipeline.evaluate import together

    try:
        record = run_json(run, run_files.COMPARISON).get(together.KEY)
    except (ArtifactError, AttributeError):
        return ""
    official = bool(runinfo.run_facts(run.manifest).splits.get("official_test"))
    return together.words(record if isinstance(record, dict) else None,
                          "official test images" if official else "test images")


# the card's tooltip on the pooled answer: what it is, and what it is not
TOGETHER_HELP = (f"{TOGETHER_LABEL}: {TOGETHER_MEANING} When the models disagree it is almost "
                 "always one side of that disagreement, but pooling can pick a class neither "
                 f"answered (the line then says \"{NEITHER_WORDS}\"); each heatmap explains only "
                 "its own model, none the pooled answer.")


def together_help(record_words: str = "", weak_below: float | None = None) -> str:
    """The answer line's tooltip for the pooled answer: `TOGETHER_HELP`, when it is called weak
    (`weak_below`, its validation threshold), then the run's test record (`together_note`)
    when measured."""
    weak = ("" if weak_below is None else
            f"\n\nSaid weak below {percent(weak_below)}: on validation images its answers "
            f"that unsure were right less than {LOW_CONFIDENCE_ACCURACY:.0%} of the time.")
    return TOGETHER_HELP + weak + (f"\n\n{record_words}" if record_words else "")


def size_groups(run: Run) -> dict[str, dict | None]:
    """Per model, its test results by pixel size (metrics.json `by_size`); None where the run
    was evaluated before the breakdown existed or the file cannot be read."""
    return _metrics_entry(run, "by_size")


def tumour_records(run: Run) -> dict[str, dict | None]:
    """Per model, its test split's tumour-vs-no-tumour counts (metrics.json
    `tumor_vs_no_tumor`); None where not evaluated or unreadable."""
    return _metrics_entry(run, "tumor_vs_no_tumor")


def pointing_records(run: Run) -> dict[str, flags.PointingRecord]:
    """Per model whose explanations.json measures its default, that default's pointing game
    on the run's test images per true class (`flags.PointingRecord`); models without one are
    left out, and nothing is said of them."""
    from dashboard.figures.quality_text import class_pointing_counts

    out = {}
    for m in run.model_names:
        try:
            obj = run_json(run, f"{m}/{run_files.EXPLANATIONS}")
        except ArtifactError:
            continue
        if not isinstance(obj, dict) or not is_default(run, m, obj.get("method"),
                                                       obj.get("layer")):
            continue
        counts = class_pointing_counts(obj.get("rows"))
        if counts:
            region = ("box" if runinfo.masks_are_boxes(obj.get("masks_dir"), obj.get("data_dir"))
                      else "mask")
            out[m] = flags.PointingRecord(counts, region)
    return out


def external_apart_records(run: Run) -> dict[str, dict[str, int]]:
    """Per folder measured by `explain-eval --data` with both models' defaults, the
    two-heatmap rule's record there (`agreement.default_apart_record`); folders without such a
    pair are left out."""
    from dashboard.figures.external import by_folder

    out = {}
    for folder, files in by_folder(external_explanations(run)).items():
        pair = {m: next((r for r in rs if is_default(run, m, r.get("method"), r.get("layer"))),
                        None) for m, rs in files.items()}
        pair = {m: r for m, r in pair.items() if r is not None}
        record = agreement.default_apart_record(run, pair)
        if record:
            out[folder] = record
    return out


def apart_record(run: Run) -> dict[str, int] | None:
    """The two-heatmap rule's record on the run's boxed test images
    (`agreement.default_apart_record` over both models' explanations.json); None when a file
    is missing or the rule does not apply to them, and nothing is said."""
    expl = {}
    for m in run.model_names:
        try:
            expl[m] = run_json(run, f"{m}/{run_files.EXPLANATIONS}")
        except ArtifactError:
            return None
    return agreement.default_apart_record(run, expl)
